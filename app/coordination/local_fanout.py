"""Run events handed to the followers on the instance that publishes them, in memory.

A streamed turn is followed, nearly always, by the request that started it, on the
instance executing it. Through a shared log (Redis Streams, PostgreSQL rows) each event
then makes a round trip out and another back in (`XREAD BLOCK`, or a NOTIFY and a
query) before the SSE response can write it, and every concurrent stream holds a blocking
read of its own. `LocalFanout` wraps such a log: the runs *created* on this instance get
an in-memory channel; `publish` still writes every event to the shared log first (other
instances, reconnects and `run.snapshot` read it there), then appends what the log
returned to the channel, and `follow` on this instance reads the channel, never the log.

The channel holds the run's events from seq 1, in seq order (events published
concurrently are delivered in order once the gap before them is filled). It closes with
the run's terminal event; a follower that attached before keeps reading it to the end. If
a publish fails (the log may or may not hold that event) or the run outgrows
`max_events`, the channel is *broken*: its followers continue from the shared log after
the last event they read, exactly as if they had followed the log from the start, and
later publishes of that run go to the log only. A run created on another instance, or
before a restart, is followed on the log as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from datetime import datetime
from typing import Any

from app.coordination.base import (
    TERMINAL_EVENTS,
    RunEvent,
    RunLog,
    RunRecord,
    TurnLease,
    TurnLocks,
)


class _Channel:
    """The events of one run published here: `events[i]` has seq `i + 1`."""

    __slots__ = ("_early", "_waiters", "broken", "closed", "events")

    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self.closed = False  # the terminal event is in `events`
        self.broken = False  # the log is the only source from now on
        self._early: dict[int, RunEvent] = {}  # published out of order, waiting for a gap
        # each waiting follower's own bare future (not an `asyncio.Event` per wake-up, and
        # not one shared future: cancelling a waiting task cancels what it awaits)
        self._waiters: list[asyncio.Future[None]] = []

    def add(self, event: RunEvent) -> None:
        if event.seq <= len(self.events):
            return  # seen already (the log answered a retried publish twice)
        self._early[event.seq] = event
        while (nxt := self._early.pop(len(self.events) + 1, None)) is not None:
            self.events.append(nxt)
            if nxt.type in TERMINAL_EVENTS:
                self.closed = True
        self._notify()

    def break_(self) -> None:
        self.broken = True
        self._early.clear()
        self._notify()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def changed(self) -> None:
        """Until the next `add` or `break_` (call it after looking: no await in between)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter


class LocalFanout(RunLog):
    """`inner` with in-memory delivery to this instance's followers (module docstring).
    At most `max_channels` runs have a channel at once (more are followed on the log)."""

    def __init__(
        self, inner: RunLog, *, max_events: int = 10_000, max_channels: int = 10_000
    ) -> None:
        self._inner = inner
        self._max_events = max_events
        self._max_channels = max_channels
        self._channels: dict[str, _Channel] = {}

    @property
    def inner(self) -> RunLog:
        return self._inner

    def channels(self) -> int:
        """How many runs have an open channel (for tests and stats)."""
        return len(self._channels)

    # --- records: the log's ---------------------------------------------------------------

    async def create(self, record: RunRecord) -> None:
        await self._inner.create(record)
        if len(self._channels) < self._max_channels:
            self._channels[record.run.id] = _Channel()

    async def save(self, record: RunRecord) -> None:
        await self._inner.save(record)

    async def get(self, run_id: str) -> RunRecord | None:
        return await self._inner.get(run_id)

    # --- events ---------------------------------------------------------------------------

    async def publish(self, run_id: str, type_: str, data: dict[str, Any]) -> RunEvent:
        return await self._published(run_id, self._inner.publish(run_id, type_, data))

    async def publish_many(
        self, run_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[RunEvent]:
        channel = self._channels.get(run_id)
        try:
            published = await self._inner.publish_many(run_id, events)
        except BaseException:
            if channel is not None:
                self._drop(run_id, channel, broken=True)
            raise
        for event in published:
            if channel is None or self._channels.get(run_id) is not channel:
                break  # (no channel, or it closed or broke on the way)
            self._deliver(run_id, channel, event)
        return published

    async def create_and_publish(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        event = await self._inner.create_and_publish(record, type_, data)  # (one step there)
        if len(self._channels) < self._max_channels:
            channel = self._channels[record.run.id] = _Channel()
            self._deliver(record.run.id, channel, event)
        return event

    async def create_and_publish_locking(
        self, locks: TurnLocks, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> tuple[RunEvent, TurnLease | None]:
        event, lease = await self._inner.create_and_publish_locking(locks, record, type_, data)
        if len(self._channels) < self._max_channels:
            channel = self._channels[record.run.id] = _Channel()
            self._deliver(record.run.id, channel, event)
        return event, lease

    async def save_and_publish(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        write = self._inner.save_and_publish(record, type_, data)
        return await self._published(record.run.id, write)

    async def save_and_publish_releasing(
        self, lease: TurnLease, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        write = self._inner.save_and_publish_releasing(lease, record, type_, data)
        return await self._published(record.run.id, write)

    async def _published(self, run_id: str, write: Awaitable[RunEvent]) -> RunEvent:
        """`write` (the log's publish) awaited, its event handed to the run's channel."""
        channel = self._channels.get(run_id)
        try:
            event = await write
        except BaseException:
            if channel is not None:
                self._drop(run_id, channel, broken=True)
            raise
        if channel is not None:
            self._deliver(run_id, channel, event)
        return event

    def _deliver(self, run_id: str, channel: _Channel, event: RunEvent) -> None:
        if event.seq > self._max_events:
            self._drop(run_id, channel, broken=True)
        else:
            channel.add(event)
            if channel.closed:
                self._drop(run_id, channel, broken=False)

    def _drop(self, run_id: str, channel: _Channel, *, broken: bool) -> None:
        if self._channels.get(run_id) is channel:
            del self._channels[run_id]
        if broken:
            channel.break_()

    async def follow(self, run_id: str, *, after: int) -> AsyncGenerator[RunEvent, None]:
        channel = self._channels.get(run_id)
        last = after
        if channel is not None:
            while True:
                while last < len(channel.events):
                    event = channel.events[last]
                    last = event.seq
                    yield event
                    if event.type in TERMINAL_EVENTS:
                        return
                if channel.closed:
                    return  # asked for events after the terminal one
                if channel.broken:
                    break
                await channel.changed()
        async for event in self._inner.follow(run_id, after=last):
            yield event

    # --- erasure and cancellation: the log's ----------------------------------------------

    async def erase(
        self, conversation_id: str, lineage_id: str | None, *, created_at: datetime | None = None
    ) -> list[str]:
        # (ended: no channel)
        return await self._inner.erase(conversation_id, lineage_id, created_at=created_at)

    async def request_cancel(self, run_id: str) -> None:
        await self._inner.request_cancel(run_id)

    def cancel_requests(self) -> AsyncIterator[str]:
        return self._inner.cancel_requests()
