"""Following a run's events on PostgreSQL (`SqlRunLog.follow` when the events are in
`run_events`; `app.coordination.sql_runs`' module docstring says what the tables hold):
the rows after `after`, then a wait on `LISTEN` for more; and the run's row state both
the follow and `SqlRunLog.get` read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from app.coordination.base import TERMINAL_EVENTS, EventsExpired, RunEvent, RunRecord
from app.coordination.sql_clock import SqlClock
from app.coordination.sql_listen import PgListener
from app.coordination.sql_run_events import events_after
from app.stores.sql_engine import unavailable_on_connection_errors
from app.stores.sql_tables import coordination_instances, run_records


class SqlRunFollow:
    """A `SqlRunLog`'s follow side: `beat` starts its heartbeat, `mark_lost` fails a run
    whose owner died (`SqlRunLog._mark_lost`); `listener` is None on SQLite (no follow
    here then, only `read`)."""

    def __init__(
        self,
        sql: SqlClock,
        listener: PgListener | None,
        instance_id: str,
        *,
        wake_s: float,
        beat: Callable[[], Awaitable[None]],
        mark_lost: Callable[[str], Awaitable[RunRecord | None]],
    ) -> None:
        self._sql = sql
        self._listener = listener
        self._instance_id = instance_id
        self._wake_s = wake_s
        self._beat = beat
        self._mark_lost = mark_lost

    async def read(self, run_id: str) -> Any:
        t, i = run_records, coordination_instances
        alive = sa.exists().where(i.c.id == t.c.owner, i.c.expires_at > self._sql.now())
        query = sa.select(
            t.c.record,
            t.c.terminal,
            t.c.last_seq,
            t.c.first_seq,
            (t.c.events_expire_at.is_not(None)).label("finished"),
            sa.and_(
                t.c.events_expire_at.is_not(None), t.c.events_expire_at <= self._sql.now()
            ).label("events_expired"),
            sa.or_(t.c.owner == self._instance_id, alive).label("owner_alive"),
        ).where(t.c.run_id == run_id)
        with unavailable_on_connection_errors():
            async with self._sql.reader.connect() as conn:
                return (await conn.execute(query)).first()

    async def follow(self, run_id: str, *, after: int) -> AsyncGenerator[RunEvent, None]:
        """PostgreSQL: the rows after `after`, then a wait on `LISTEN` for more."""
        assert self._listener is not None
        await self._beat()
        with self._listener.watch(run_id) as wake:
            last = after
            record_ended = False  # the record is terminal but its terminal event is not in
            while True:
                await self._listener.ensure()
                wake.clear()
                state = await self.read(run_id)
                if state is None:
                    raise EventsExpired(run_id, last_seq=last if last > after else 0)
                if state.events_expired or (state.last_seq > last and last + 1 < state.first_seq):
                    raise EventsExpired(run_id, last_seq=int(state.last_seq))
                events = await events_after(self._sql, run_id, last)
                for event in events:
                    if event.seq != last + 1:  # trimmed while we read (state is older)
                        fresh = await self.read(run_id)
                        seq = int(fresh.last_seq) if fresh is not None else event.seq
                        raise EventsExpired(run_id, last_seq=max(seq, event.seq))
                    last = event.seq
                    yield event
                    if event.type in TERMINAL_EVENTS:
                        return
                if events:
                    continue
                if state.finished and last >= state.last_seq:
                    return  # asked for events after the terminal one
                if state.terminal and not state.finished:
                    if record_ended:  # a whole wake later, still no terminal event
                        raise EventsExpired(run_id, last_seq=int(state.last_seq))
                    record_ended = True
                if not state.terminal and not state.owner_alive:
                    await self._mark_lost(run_id)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=self._wake_s)
