"""In-process coordination for a single instance (the embedded default)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from app.coordination.base import (
    TERMINAL_EVENTS,
    Coordinator,
    EventsExpired,
    IdempotencyKeys,
    IdempotencyRecord,
    RunEvent,
    RunLog,
    RunRecord,
    TurnLease,
    TurnLocks,
)
from app.errors import ConversationBusy

# --- turn locks ------------------------------------------------------------------------


@dataclass
class _LockState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holder: str | None = None
    users: int = 0  # holders + waiters; the entry is dropped when it reaches 0


class _MemoryLease(TurnLease):
    def __init__(self, locks: MemoryTurnLocks, conversation_id: str, run_id: str) -> None:
        self._locks = locks
        self._conversation_id = conversation_id
        self.run_id = run_id
        self._released = False

    async def release(self) -> None:
        if not self._released:
            self._released = True
            self._locks._release(self._conversation_id)

    @property
    def lost(self) -> bool:
        return False


class MemoryTurnLocks(TurnLocks):
    """asyncio locks (FIFO-fair) per conversation, dropped when nobody uses them."""

    def __init__(self) -> None:
        self._states: dict[str, _LockState] = {}

    async def acquire(self, conversation_id: str, run_id: str, *, wait_s: float) -> TurnLease:
        state = self._states.setdefault(conversation_id, _LockState())
        state.users += 1
        try:
            if wait_s <= 0:
                if state.lock.locked():
                    raise TimeoutError
                await state.lock.acquire()
            else:
                await asyncio.wait_for(state.lock.acquire(), timeout=wait_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            self._drop_user(conversation_id, state)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ConversationBusy(
                f"Conversation {conversation_id!r} is running another turn.",
                extra={"run_id": state.holder},
            ) from None
        state.holder = run_id
        return _MemoryLease(self, conversation_id, run_id)

    def _release(self, conversation_id: str) -> None:
        state = self._states[conversation_id]
        state.holder = None
        state.lock.release()
        self._drop_user(conversation_id, state)

    def _drop_user(self, conversation_id: str, state: _LockState) -> None:
        state.users -= 1
        if state.users == 0:
            self._states.pop(conversation_id, None)

    async def holder(self, conversation_id: str) -> str | None:
        state = self._states.get(conversation_id)
        return state.holder if state else None


# --- idempotency -----------------------------------------------------------------------


class MemoryIdempotencyKeys(IdempotencyKeys):
    def __init__(self, clock: Any = time.monotonic) -> None:
        self._records: dict[tuple[str, str], tuple[float, IdempotencyRecord]] = {}
        self._clock = clock

    async def reserve(
        self, scope: str, key: str, record: IdempotencyRecord, *, ttl_s: float
    ) -> IdempotencyRecord | None:
        now = self._clock()
        self._expire(now)
        existing = self._records.get((scope, key))
        if existing is not None and existing[0] > now:
            return existing[1]
        self._records[(scope, key)] = (now + ttl_s, record)
        return None

    async def forget(self, scope: str, key: str, *, ref: str) -> None:
        existing = self._records.get((scope, key))
        if existing is not None and existing[1].ref == ref:
            del self._records[(scope, key)]

    def _expire(self, now: float) -> None:
        if len(self._records) < 1024:
            return
        for k in [k for k, (deadline, _) in self._records.items() if deadline <= now]:
            del self._records[k]


# --- run log ---------------------------------------------------------------------------


@dataclass
class _RunEntry:
    record: RunRecord
    events: deque[RunEvent]
    next_seq: int = 1
    finished_at: float | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class MemoryRunLog(RunLog):
    """Run records and event logs in process memory.

    A finished run's events are kept for `retention_s`, then dropped (a reconnect gets a
    `run.snapshot`); its record is kept `record_retention_s`. At most `max_events` events
    are kept per run: older ones are dropped first, which is what `EventsExpired` reports.
    """

    def __init__(
        self,
        *,
        retention_s: float = 3600.0,
        record_retention_s: float = 86400.0,
        max_events: int = 10_000,
        clock: Any = time.monotonic,
    ) -> None:
        self._runs: dict[str, _RunEntry] = {}
        self._retention_s = retention_s
        self._record_retention_s = record_retention_s
        self._max_events = max_events
        self._clock = clock
        self._cancels: asyncio.Queue[str] = asyncio.Queue()

    async def create(self, record: RunRecord) -> None:
        self._expire()
        self._runs[record.run.id] = _RunEntry(record=record, events=deque(maxlen=self._max_events))

    async def save(self, record: RunRecord) -> None:
        entry = self._runs.get(record.run.id)
        if entry is None:
            await self.create(record)
            return
        entry.record = record

    async def get(self, run_id: str) -> RunRecord | None:
        entry = self._runs.get(run_id)
        return entry.record if entry else None

    async def publish(self, run_id: str, type_: str, data: dict[str, Any]) -> RunEvent:
        entry = self._runs[run_id]
        event = RunEvent(seq=entry.next_seq, type=type_, data=data)
        entry.next_seq += 1
        entry.events.append(event)
        if type_ in TERMINAL_EVENTS:
            entry.finished_at = self._clock()
        async with entry.changed:
            entry.changed.notify_all()
        return event

    async def follow(self, run_id: str, *, after: int) -> AsyncIterator[RunEvent]:
        entry = self._runs.get(run_id)
        if entry is None or (entry.finished_at is not None and not entry.events):
            raise EventsExpired(run_id)
        if entry.events and entry.events[0].seq > after + 1:
            raise EventsExpired(run_id)
        last = after
        while True:
            pending = [e for e in entry.events if e.seq > last] if entry.events else []
            if pending and pending[0].seq > last + 1:
                raise EventsExpired(run_id)  # overtaken by trimming while following
            for event in pending:
                last = event.seq
                yield event
                if event.type in TERMINAL_EVENTS:
                    return
            if entry.finished_at is not None:
                return  # asked for events after the terminal one: nothing more will come
            async with entry.changed:
                if entry.next_seq - 1 <= last:
                    await entry.changed.wait()

    async def request_cancel(self, run_id: str) -> None:
        self._cancels.put_nowait(run_id)

    async def cancel_requests(self) -> AsyncIterator[str]:
        while True:
            yield await self._cancels.get()

    def _expire(self) -> None:
        now = self._clock()
        for run_id, entry in list(self._runs.items()):
            if entry.finished_at is None:
                continue
            age = now - entry.finished_at
            if age > self._record_retention_s:
                del self._runs[run_id]
            elif age > self._retention_s and entry.events:
                entry.events.clear()


def memory_coordinator(*, event_retention_s: float) -> Coordinator:
    return Coordinator(
        MemoryTurnLocks(),
        MemoryIdempotencyKeys(),
        MemoryRunLog(retention_s=event_retention_s),
    )
