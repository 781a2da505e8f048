"""In-process coordination for a single instance (the embedded default): the run log here,
the turn locks in `memory_locks.py`, the idempotency records in `memory_idempotency.py`."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.coordination.base import (
    TERMINAL_EVENTS,
    Coordinator,
    EventsExpired,
    RunEvent,
    RunLog,
    RunRecord,
)
from app.coordination.memory_idempotency import MemoryIdempotencyKeys
from app.coordination.memory_locks import MemoryTurnLocks

# --- run log ---------------------------------------------------------------------------


@dataclass
class _RunEntry:
    record: RunRecord
    events: list[RunEvent] = field(default_factory=list)  # contiguous seqs, oldest first
    next_seq: int = 1
    finished_at: float | None = None
    counted: int = 0  # of its events, how many `MemoryRunLog._retained` counts
    # The futures of the followers waiting for the next event, resolved (and dropped) by
    # each publish: one bare future per wait. (An `asyncio.Event` made per publish cost
    # its construction and a loop check behind a threading lock at each first wait; a
    # Condition's waiter must also take its lock again after the wake-up.) A follower's
    # own future, not one shared: cancelling a waiting task cancels what it awaits. Made
    # by the first follower that waits: most runs are never followed.
    waiters: list[asyncio.Future[None]] | None = None


class MemoryRunLog(RunLog):
    """Run records and event logs in process memory.

    A finished run's events are kept for `retention_s`, then dropped (a reconnect gets a
    `run.snapshot`), and sooner when the finished runs' events add up to more than
    `max_retained_events` (`PARLEY_RUN_LOG_MAX_EVENTS`; the oldest runs' go first); its
    record is kept `record_retention_s`, and at most `max_records` finished records are
    kept (the oldest go first). Records of runs started with an idempotency key
    (`RunRecord.idempotency`) answer that key's retries, so they are not counted against
    `max_records` but against `max_keyed_records` (the bound of the in-process idempotency
    keys, which then lose their key anyway). At most `max_events` events are kept per run:
    the oldest half is dropped when a run exceeds it, which is what `EventsExpired`
    reports. Expiry pops due runs off queues kept in finishing order, so its cost does not
    grow with the number of runs retained.

    With `events_only` the records are kept elsewhere (`SqlRunLog` on SQLite keeps them in
    its database) and this log only serves the events: a finished run's entry goes with
    its events, leaving only its last seq (for `EventsExpired.last_seq`) for the newest
    `max_records` such runs; `max_keyed_records` does not apply.
    """

    def __init__(
        self,
        *,
        retention_s: float = 3600.0,
        record_retention_s: float = 86400.0,
        max_records: int = 10_000,
        max_keyed_records: int = 100_000,
        max_events: int = 10_000,
        max_retained_events: int = 10_000,
        events_only: bool = False,
        clock: Any = time.monotonic,
    ) -> None:
        self._runs: dict[str, _RunEntry] = {}
        self._events_only = events_only
        # events_only: run id -> last seq of finished runs whose entry went, newest last
        self._ended: OrderedDict[str, int] = OrderedDict()
        self._retention_s = retention_s
        self._record_retention_s = record_retention_s
        self._max_records = max_records
        self._max_keyed_records = max_keyed_records
        self._max_events = max_events
        self._max_retained = max_retained_events
        self._retained = 0  # events held by finished runs (the ones `_events_due` lists)
        self._clock = clock
        self._events_due: deque[tuple[float, str]] = deque()  # (finished_at, run_id)
        self._records_due: deque[tuple[float, str]] = deque()
        self._keyed_due: deque[tuple[float, str]] = deque()
        self._cancels: asyncio.Queue[str] = asyncio.Queue()
        # conversation id -> ids of its runs with an entry here (for `erase`)
        self._by_conversation: dict[str, set[str]] = {}

    async def create(self, record: RunRecord) -> None:
        self._expire()
        entry = _RunEntry(record=record)
        self._runs[record.run.id] = entry
        self._by_conversation.setdefault(record.run.conversation_id, set()).add(record.run.id)
        if record.run.status.terminal:  # (a record saved after its entry was dropped)
            self._finished(record.run.id, entry)

    async def save(self, record: RunRecord) -> None:
        entry = self._runs.get(record.run.id)
        if entry is None:
            if not (self._events_only and record.run.status.terminal):
                await self.create(record)  # (events_only: a finished run has no events left)
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
        if len(entry.events) > self._max_events:
            del entry.events[: len(entry.events) // 2]
        if type_ in TERMINAL_EVENTS and entry.finished_at is None:
            self._finished(run_id, entry)
            self._expire()
        if entry.waiters:
            waiters, entry.waiters = entry.waiters, None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        return event

    def _finished(self, run_id: str, entry: _RunEntry) -> None:
        """Queue a run that just ended for expiry (once)."""
        entry.finished_at = now = self._clock()
        self._events_due.append((now, run_id))
        if not self._events_only:
            keyed = entry.record.idempotency is not None
            (self._keyed_due if keyed else self._records_due).append((now, run_id))
        self._retained += len(entry.events) - entry.counted
        entry.counted = len(entry.events)

    async def follow(self, run_id: str, *, after: int) -> AsyncGenerator[RunEvent, None]:
        entry = self._runs.get(run_id)
        if entry is None:
            raise EventsExpired(run_id, last_seq=self._ended.get(run_id, 0))
        if entry.finished_at is not None and not entry.events:
            raise EventsExpired(run_id, last_seq=entry.next_seq - 1)
        last = after
        while True:
            events = entry.events
            if events:
                first = events[0].seq
                if last + 1 < first:
                    # trimmed before (or while) we read them
                    raise EventsExpired(run_id, last_seq=entry.next_seq - 1)
                index = last + 1 - first
                if index < len(events):
                    event = events[index]
                    last = event.seq
                    yield event
                    if event.type in TERMINAL_EVENTS:
                        return
                    continue
            elif entry.finished_at is not None:
                # retention dropped them while we read
                raise EventsExpired(run_id, last_seq=entry.next_seq - 1)
            if entry.finished_at is not None:
                return  # asked for events after the terminal one: nothing more will come
            waiter = asyncio.get_running_loop().create_future()
            if entry.waiters is None:
                entry.waiters = []
            entry.waiters.append(waiter)  # (nothing was published since we looked: no await)
            await waiter

    async def erase(
        self, conversation_id: str, lineage_id: str | None, *, created_at: datetime | None = None
    ) -> list[str]:
        live: list[str] = []
        for run_id in list(self._by_conversation.get(conversation_id, ())):
            entry = self._runs[run_id]
            if lineage_id is not None and entry.record.lineage_id != lineage_id:
                continue
            if not entry.record.of_incarnation(created_at):
                continue
            if entry.finished_at is None:
                live.append(run_id)
                continue
            self._drop_events(entry)
            self._forget(run_id)
            self._ended.pop(run_id, None)
        return live

    def _forget(self, run_id: str) -> None:
        """Drop the run's entry and its place in the conversation index (the expiry
        queues skip ids whose entry is gone)."""
        entry = self._runs.pop(run_id, None)
        if entry is None:
            return
        conversation_id = entry.record.run.conversation_id
        ids = self._by_conversation.get(conversation_id)
        if ids is not None:
            ids.discard(run_id)
            if not ids:
                del self._by_conversation[conversation_id]

    async def request_cancel(self, run_id: str) -> None:
        self._cancels.put_nowait(run_id)

    async def cancel_requests(self) -> AsyncIterator[str]:
        while True:
            yield await self._cancels.get()

    def _expire(self) -> None:
        now = self._clock()
        while self._events_due and (
            now - self._events_due[0][0] > self._retention_s or self._retained > self._max_retained
        ):
            _, run_id = self._events_due.popleft()
            entry = self._runs.get(run_id)
            if entry is not None:
                self._drop_events(entry)
                if self._events_only:
                    self._forget(run_id)
                    self._ended[run_id] = entry.next_seq - 1
                    if len(self._ended) > self._max_records:
                        self._ended.popitem(last=False)
        for due, bound in (
            (self._records_due, self._max_records),
            (self._keyed_due, self._max_keyed_records),
        ):
            while due and (now - due[0][0] > self._record_retention_s or len(due) > bound):
                _, run_id = due.popleft()
                entry = self._runs.get(run_id)
                if entry is not None:
                    self._drop_events(entry)
                    self._forget(run_id)

    def _drop_events(self, entry: _RunEntry) -> None:
        self._retained -= entry.counted
        entry.counted = 0
        entry.events.clear()


def memory_coordinator(
    *,
    event_retention_s: float,
    max_records: int = 10_000,
    max_keys: int = 100_000,
    max_retained_events: int = 10_000,
) -> Coordinator:
    return Coordinator(
        MemoryTurnLocks(),
        MemoryIdempotencyKeys(max_records=max_keys),
        MemoryRunLog(
            retention_s=event_retention_s,
            max_records=max_records,
            max_keyed_records=max_keys,
            max_retained_events=max_retained_events,
        ),
    )
