"""The PostgreSQL `run_events` statements of `SqlRunLog`: append, trim, read after a seq.

Separate from `app.coordination.sql_runs` (the `RunLog` seam: records, follow, cancels)
because they are the event log's storage, shared by `publish` and by marking a lost run
failed (`app.coordination.sql_run_lost`). The executing instance's own events go through
the write-behind (`app.coordination.sql_event_writer`); these serve everyone else.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.coordination.base import TERMINAL_EVENTS, RunEvent
from app.coordination.sql_clock import SqlClock
from app.coordination.sql_listen import EVENTS_CHANNEL
from app.stores.sql_engine import unavailable_on_connection_errors
from app.stores.sql_tables import run_events, run_records

READ_BATCH = 500


async def append_event(
    sql: SqlClock,
    conn: AsyncConnection,
    run_id: str,
    type_: str,
    data: dict[str, Any],
    *,
    retention_s: float,
) -> tuple[RunEvent, int]:
    """One statement: bump `last_seq`, insert the event under it, `pg_notify` (sent
    when the statement's transaction commits). The event and the first kept seq."""
    t, e = run_records, run_events
    values: dict[str, Any] = {"last_seq": t.c.last_seq + 1}
    if type_ in TERMINAL_EVENTS:
        values["events_expire_at"] = sql.later(retention_s)
    bumped = (
        sa.update(t)
        .where(t.c.run_id == run_id)
        .values(**values)
        .returning(t.c.last_seq, t.c.first_seq)
        .cte("bumped")
    )
    inserted = (
        sa.insert(e)
        .from_select(
            ["run_id", "seq", "type", "data"],
            sa.select(
                sa.literal(run_id, e.c.run_id.type),
                bumped.c.last_seq,
                sa.literal(type_, e.c.type.type),
                sa.bindparam("event_data", data, type_=e.c.data.type),
            ),
        )
        .cte("inserted")
    )
    query = sa.select(
        bumped.c.last_seq, bumped.c.first_seq, sa.func.pg_notify(EVENTS_CHANNEL, run_id)
    ).add_cte(inserted)
    row = (await conn.execute(query)).first()
    if row is None:
        raise KeyError(run_id)
    return RunEvent(seq=int(row.last_seq), type=type_, data=data), int(row.first_seq)


async def trim_events(conn: AsyncConnection, run_id: str, seq: int, *, max_events: int) -> None:
    """Keep the newest half of `max_events` (followers behind it get `EventsExpired`)."""
    t, e = run_records, run_events
    keep_from = seq - max_events // 2 + 1
    await conn.execute(sa.delete(e).where(e.c.run_id == run_id, e.c.seq < keep_from))
    await conn.execute(
        sa.update(t)
        .where(t.c.run_id == run_id, t.c.first_seq < keep_from)
        .values(first_seq=keep_from)
    )


async def events_after(sql: SqlClock, run_id: str, after: int) -> list[RunEvent]:
    e = run_events
    query = (
        sa.select(e.c.seq, e.c.type, e.c.data)
        .where(e.c.run_id == run_id, e.c.seq > after)
        .order_by(e.c.seq)
        .limit(READ_BATCH)
    )
    with unavailable_on_connection_errors():
        async with sql.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
    return [RunEvent(seq=int(r.seq), type=r.type, data=dict(r.data)) for r in rows]
