"""`LISTEN/NOTIFY` on PostgreSQL: what wakes followers of a run and carries cancellations
between instances sharing the database (no polling).

One connection per instance, taken from the store's engine and kept for the instance's
life, listens on two channels: `parley_run_events` (payload: a run id; sent in the same
transaction as each event, so it is delivered after the event is committed) and
`parley_run_cancels` (payload: a run id to cancel). Followers register an `asyncio.Event`
for their run *before* they read the table, so a notification can never fall between
their read and their wait. If the listening connection dies, every follower is woken
(they re-read) and the next `ensure()` listens again; followers also re-read at least
every few seconds (`SqlRunLog.wake_s`) as a deadline, which is what re-checks the owner's
heartbeat and bounds what a lost notification can cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.stores.sql_engine import unavailable_on_connection_errors

log = logging.getLogger("parley.coordination.sql")

EVENTS_CHANNEL = "parley_run_events"
CANCELS_CHANNEL = "parley_run_cancels"


class PgListener:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._driver: Any = None
        self._lock = asyncio.Lock()
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._cancel_queues: set[asyncio.Queue[str]] = set()

    async def ensure(self) -> None:
        """Listen on both channels (connects when not listening)."""
        if self._driver is not None and not self._driver.is_closed():
            return
        async with self._lock:
            if self._driver is not None and not self._driver.is_closed():
                return
            await self._drop()
            with unavailable_on_connection_errors():
                conn = await self._engine.connect()
                try:
                    raw = await conn.get_raw_connection()
                    driver = raw.driver_connection
                    assert driver is not None
                    await driver.add_listener(EVENTS_CHANNEL, self._on_event)
                    await driver.add_listener(CANCELS_CHANNEL, self._on_cancel)
                    driver.add_termination_listener(self._on_terminated)
                except BaseException:
                    await conn.close()
                    raise
            self._conn, self._driver = conn, driver

    @contextlib.contextmanager
    def watch(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever run `run_id` gets a new event (or the listener drops)."""
        wake = asyncio.Event()
        self._watchers.setdefault(run_id, set()).add(wake)
        try:
            yield wake
        finally:
            watchers = self._watchers.get(run_id)
            if watchers is not None:
                watchers.discard(wake)
                if not watchers:
                    del self._watchers[run_id]

    @contextlib.contextmanager
    def cancels(self) -> Iterator[asyncio.Queue[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._cancel_queues.add(queue)
        try:
            yield queue
        finally:
            self._cancel_queues.discard(queue)

    def _on_event(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        for wake in self._watchers.get(payload, ()):
            wake.set()

    def _on_cancel(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        for queue in self._cancel_queues:
            queue.put_nowait(payload)

    def _on_terminated(self, conn: Any) -> None:
        if conn is not self._driver:
            return  # one we dropped ourselves
        log.warning("the LISTEN connection to PostgreSQL was lost; listening again")
        self._driver = None
        for watchers in self._watchers.values():
            for wake in watchers:
                wake.set()

    async def _drop(self) -> None:
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()  # not back to the pool: it still LISTENs

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
