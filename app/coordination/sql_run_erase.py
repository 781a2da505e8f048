"""Erasing a conversation's runs from the SQL run tables, for `SqlRunLog.erase`.

The runs of a conversation are found by `run_records.conversation_id` (indexed, migration
0009); the lineage, when given, is checked on the record's JSON (a conversation id has
at most a few lineages: one per deletion and re-creation), and so is the incarnation
(`conversation_created_at`), when given. A run has ended when its
record is terminal and its terminal event is in (`events_expire_at` is set; on SQLite,
whose events are in process memory, the caller names the runs whose terminal event is
not in yet: `live_here`). Ended runs lose their record and their events in one
transaction; live ones are returned and left alone. Separate from
`app.coordination.sql_runs` because it spans both tables and is no run's path.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa

from app.coordination.sql_clock import SqlClock
from app.stores.sql_engine import unavailable_on_connection_errors
from app.stores.sql_tables import run_events, run_records

ERASE_BATCH = 500  # ids per DELETE (bound parameters: SQLite's limit is far above it)


async def erase_runs(
    sql: SqlClock,
    conversation_id: str,
    lineage_id: str | None,
    *,
    created_at: datetime | None = None,
    live_here: Collection[str] = (),
) -> list[str]:
    """Delete the ended runs of the conversation (see the module docstring); return the
    ids of its live ones."""
    t, e = run_records, run_events
    # SQLite: the terminal event is in memory (`live_here` are those without it yet)
    event_in = t.c.events_expire_at.is_not(None) if sql.postgres else sa.true()
    query = sa.select(
        t.c.run_id,
        t.c.record["lineage_id"].as_string().label("lineage_id"),
        t.c.record["conversation_created_at"].as_string().label("created_at"),
        sa.and_(t.c.terminal, event_in).label("ended"),
    ).where(t.c.conversation_id == conversation_id)
    with unavailable_on_connection_errors():
        async with sql.write() as conn:
            rows = (await conn.execute(query)).all()
            mine = [
                r
                for r in rows
                if (lineage_id is None or r.lineage_id == lineage_id)
                and _of_incarnation(r.created_at, created_at)
            ]
            ended = [r.run_id for r in mine if r.ended and r.run_id not in live_here]
            for i in range(0, len(ended), ERASE_BATCH):
                ids = ended[i : i + ERASE_BATCH]
                await conn.execute(sa.delete(e).where(e.c.run_id.in_(ids)))
                await conn.execute(sa.delete(t).where(t.c.run_id.in_(ids)))
    gone = set(ended)
    return [r.run_id for r in mine if r.run_id not in gone]


def _of_incarnation(recorded: str | None, created_at: datetime | None) -> bool:
    """`RunRecord.of_incarnation` on the record's JSON text of `conversation_created_at`."""
    return (
        created_at is None
        or recorded is None
        or datetime.fromisoformat(recorded.replace("Z", "+00:00")) == created_at
    )
