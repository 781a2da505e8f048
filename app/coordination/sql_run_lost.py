"""Failing a run whose instance died (`instance_lost`), for `SqlRunLog`.

Separate from `app.coordination.sql_runs` because it is its own rule, with its own
exception: a run whose commit landed is not failed (see `mark_lost`). Whoever reads such
a run (`get`, followers on each wake) calls it; the compare-and-set on `terminal` makes
concurrent readers agree on one outcome.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.coordination.base import RunRecord
from app.coordination.sql_clock import SqlClock
from app.coordination.sql_run_events import append_event
from app.domain import RunStatus
from app.domain.run import RunError
from app.stores.sql_engine import unavailable_on_connection_errors
from app.stores.sql_tables import idempotency_keys, messages, run_records

log = logging.getLogger("parley.coordination.sql")

LOST_DETAIL = "The instance executing this run stopped before it finished; nothing was committed."


async def mark_lost(
    sql: SqlClock, run_id: str, *, retention_s: float, record_retention_s: float
) -> RunRecord | None:
    """Fail a run whose owner died (compare-and-set on `terminal`); free its keys and
    publish its terminal event. None when somebody else finished it first.

    Not a run whose commit landed (its first message is stored with its id: the owner
    died after committing, before recording the end; a kill -9 between the two): its
    record is returned as it is, still running, for the manager's `RunTruth` to derive
    and record the outcome from the commit (`completed`). Failing it would free its
    key, and the client's same-key retry would run the committed turn a second time
    (found by the outside tester on SQLite)."""
    t = run_records
    with unavailable_on_connection_errors():
        async with sql.write() as conn:
            raw = await conn.scalar(
                sa.select(t.c.record).where(t.c.run_id == run_id, t.c.terminal.is_(False))
            )
            if raw is None:
                return None
            record = RunRecord.model_validate(raw)
            if await _committed(conn, record):
                return record
            run = record.run.model_copy(
                update={
                    "status": RunStatus.failed,
                    "finished_at": datetime.now(UTC),
                    "error": RunError(code="instance_lost", detail=LOST_DETAIL),
                }
            )
            lost = record.model_copy(update={"run": run, "result": None})
            changed = await conn.execute(
                sa.update(t)
                .where(t.c.run_id == run_id, t.c.terminal.is_(False))
                .values(
                    record=lost.model_dump(mode="json"),
                    terminal=True,
                    finished_at=sql.now(),
                    expires_at=sql.later(record_retention_s),
                )
            )
            if changed.rowcount != 1:
                return None
            await conn.execute(sa.delete(idempotency_keys).where(idempotency_keys.c.ref == run_id))
            if sql.postgres:
                data = {
                    "run": run.model_dump(mode="json"),
                    "error": run.error.model_dump(mode="json") if run.error else None,
                }
                await append_event(sql, conn, run_id, "run.failed", data, retention_s=retention_s)
    log.warning("run %s: its instance stopped; marked failed (instance_lost)", run_id)
    return lost


async def _committed(conn: AsyncConnection, record: RunRecord) -> bool:
    """Whether the run's first message is in the store with the run's id (the commit is
    the truth, `app.manager.run_truth`): the store's `messages` table is in this database."""
    if record.first_message_id is None:
        return False
    m = messages
    query = sa.select(m.c.data["run_id"].as_string()).where(
        m.c.lineage_id == record.lineage_id, m.c.id == record.first_message_id
    )
    return bool(await conn.scalar(query) == record.run.id)
