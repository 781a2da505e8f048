"""A run's creation on PostgreSQL: its record and its first event in one statement, alone
(`EventWriter.create`) or ahead of another statement that rides with it, the run's first
try at its turn lock (`creating_with`, `SqlLeaseBackend.acquire_step`: one round trip
instead of two per turn).

The record and the event are data-modifying CTEs (the event's foreign key is checked at
the statement's end, when the record is in). The statement commits synchronously, and so
does the lease statement that rides with it: an asynchronous creation lost in a server
crash (this process lives on, its pool reconnects, the turn's messages still commit) left
a run whose end could never be written (the end batch updates the record and inserts the
terminal event, whose foreign key refuses it), retried until shutdown (second reviewer
R2-1). Events before the terminal one still commit asynchronously (`sql_event_writer`):
their loss leaves a gap in the log, never an end that cannot land.

No `pg_notify`: no follower can wait for a run that does not exist yet (one that reads no
record gives up, `SqlRunLog._follow_rows`), and every instance's listener, this one's
included, was woken for it (a NOTIFY also serializes its commit on the database's notify
lock).
"""

from __future__ import annotations

import re

from app.coordination.base import RunRecord

# $1 run id, $2 owner, $3 record JSON, $4 event type, $5 event JSON, $6 conversation id
CREATE_PARAMS = 6
_CREATE_CTES = """created AS (
        INSERT INTO run_records
            (run_id, owner, terminal, record, last_seq, first_seq, conversation_id)
        VALUES ($1, $2, false, CAST($3 AS jsonb), 1, 1, $6)
    ), inserted AS (
        INSERT INTO run_events (run_id, seq, type, data)
        VALUES ($1, 1, $4, CAST($5 AS jsonb))
    )"""
CREATE_WITH_EVENT = f"""
    WITH {_CREATE_CTES}
    SELECT 1
"""

_PARAM = re.compile(r"\$(\d+)")


def creation_args(record: RunRecord, owner: str, type_: str, data_json: str) -> tuple[str, ...]:
    """The creation's parameters: the live run `record` owned by `owner`, its first event
    `type_` with its data as JSON text (`sql_event_batch.event_json`)."""
    return (
        record.run.id,
        owner,
        record.model_dump_json(),
        type_,
        data_json,
        record.run.conversation_id,
    )


def creating_with(statement: str) -> str:
    """`statement` (SQL text starting with `WITH`, positional `$n` parameters, no `$` in
    its literals) with the run's creation ahead of it, in the same statement: the
    creation's CTEs first, then `statement`'s, whose parameters follow the creation's
    (`$n` becomes `$(n + CREATE_PARAMS)`); its result is the statement's result."""
    head, _, rest = statement.lstrip().partition(" ")
    if head.upper() != "WITH":
        raise ValueError("creating_with() needs a statement starting with WITH")

    def shifted(m: re.Match[str]) -> str:
        return f"${int(m.group(1)) + CREATE_PARAMS}"

    return f"WITH {_CREATE_CTES}, {_PARAM.sub(shifted, rest)}"
