"""Write-behind of the events of the runs an instance executes (PostgreSQL).

Streaming a turn publishes an event per delta; waiting for a database round trip on each
would slow every turn down by the number of its events. The executing instance is the
only publisher of its runs (it created them), so it numbers their events itself and a
background task writes whatever accumulated in one transaction: a multi-row INSERT,
`last_seq` (and the event retention, after a terminal event) on the records, then one
`pg_notify` per run, delivered at COMMIT. `publish` returns at once for ordinary events
and waits for the write of terminal ones (and when the backlog passes `HIGH_WATER`), so a
run's end is durable before its executor moves on, and an unreachable database reaches
the executor (`StoreUnavailable`) instead of piling up. A batch that cannot be written is
dropped (logged): followers see the gap and fall back to a `run.snapshot`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import sqlalchemy as sa

from app.coordination.base import TERMINAL_EVENTS, RunEvent
from app.coordination.sql_clock import SqlClock
from app.coordination.sql_listen import EVENTS_CHANNEL
from app.errors import StoreUnavailable
from app.stores.sql_engine import unavailable_on_connection_errors
from app.stores.sql_tables import run_events, run_records

log = logging.getLogger("parley.coordination.sql")

HIGH_WATER = 1000

_Event = tuple[str, int, str, dict[str, Any]]


class EventWriter:
    def __init__(self, sql: SqlClock, *, retention_s: float, max_events: int) -> None:
        self._sql = sql
        self._retention_s = retention_s
        self._max_events = max_events
        self._seqs: dict[str, int] = {}  # run -> last seq given out, for runs created here
        self._firsts: dict[str, int] = {}  # run -> first seq still kept
        self._pending: list[_Event] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def adopt(self, run_id: str) -> None:
        """Run `run_id` was created here: its events are numbered and written here."""
        self._seqs[run_id] = 0
        self._firsts[run_id] = 1

    def owns(self, run_id: str) -> bool:
        return run_id in self._seqs

    async def publish(self, run_id: str, type_: str, data: dict[str, Any]) -> RunEvent:
        seq = self._seqs[run_id] + 1
        self._seqs[run_id] = seq
        self._pending.append((run_id, seq, type_, data))
        terminal = type_ in TERMINAL_EVENTS
        waiter: asyncio.Future[None] | None = None
        if terminal or len(self._pending) >= HIGH_WATER:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="sql-run-events")
        self._wake.set()
        if waiter is not None:
            await waiter
        if terminal:
            self._seqs.pop(run_id, None)
            self._firsts.pop(run_id, None)
        return RunEvent(seq=seq, type=type_, data=data)

    async def flush(self) -> None:
        """Wait until every event published so far is written (before a run's record says
        it ended: a follower that sees the end must find its events)."""
        if self._task is None or self._task.done():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        await waiter

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._waiters:
                batch, waiters = self._pending, self._waiters
                self._pending, self._waiters = [], []
                error: BaseException | None = None
                try:
                    if batch:
                        await self._write(batch)
                except Exception as exc:
                    log.warning(
                        "dropped %d run events that could not be written: %r", len(batch), exc
                    )
                    error = (
                        exc
                        if isinstance(exc, StoreUnavailable)
                        else StoreUnavailable(f"Run events could not be written: {exc!r}")
                    )
                for waiter in waiters:
                    if not waiter.done():
                        if error is None:
                            waiter.set_result(None)
                        else:
                            waiter.set_exception(error)

    async def _write(self, batch: list[_Event]) -> None:
        t, e = run_records, run_events
        last: dict[str, int] = {}
        ended: set[str] = set()
        for run_id, seq, type_, _ in batch:
            last[run_id] = seq
            if type_ in TERMINAL_EVENTS:
                ended.add(run_id)
        trims = {}
        for run_id, seq in last.items():
            first = self._firsts.get(run_id)
            if first is not None and seq - first + 1 > self._max_events:
                trims[run_id] = self._firsts[run_id] = seq - self._max_events // 2 + 1
        bump = (
            sa.update(t)
            .where(t.c.run_id == sa.bindparam("rid"))
            .values(last_seq=sa.func.greatest(t.c.last_seq, sa.bindparam("seq")))
        )
        with unavailable_on_connection_errors():
            async with self._sql.writer.begin() as conn:
                await conn.execute(
                    sa.insert(e),
                    [{"run_id": r, "seq": s, "type": ty, "data": d} for r, s, ty, d in batch],
                )
                await conn.execute(bump, [{"rid": r, "seq": s} for r, s in last.items()])
                if ended:
                    await conn.execute(
                        sa.update(t)
                        .where(t.c.run_id.in_(ended))
                        .values(events_expire_at=self._sql.later(self._retention_s))
                    )
                for run_id, keep_from in trims.items():
                    await conn.execute(
                        sa.delete(e).where(e.c.run_id == run_id, e.c.seq < keep_from)
                    )
                    await conn.execute(
                        sa.update(t).where(t.c.run_id == run_id).values(first_seq=keep_from)
                    )
                await conn.execute(
                    sa.text(
                        "SELECT pg_notify(:channel, r) FROM unnest(CAST(:runs AS text[])) AS r"
                    ),
                    {"channel": EVENTS_CHANNEL, "runs": list(last)},
                )

    async def close(self) -> None:
        """Write what is pending, then stop."""
        if self._task is None:
            return
        if self._pending:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._wake.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(waiter, timeout=5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
