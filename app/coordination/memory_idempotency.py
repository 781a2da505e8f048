"""In-process idempotency records for a single instance (`memory_coordinator`)."""

from __future__ import annotations

import heapq
import time
from typing import Any

from app.coordination.base import IdempotencyKeys, IdempotencyRecord


class MemoryIdempotencyKeys(IdempotencyKeys):
    """Records expire after their TTL; at most `max_records` are kept (the soonest to
    expire go first). Expiry pops a deadline heap, so it costs O(log n) per record."""

    def __init__(self, clock: Any = time.monotonic, max_records: int = 100_000) -> None:
        self._records: dict[tuple[str, str], tuple[float, IdempotencyRecord]] = {}
        self._deadlines: list[tuple[float, tuple[str, str]]] = []
        self._clock = clock
        self._max_records = max_records

    async def reserve(
        self, scope: str, key: str, record: IdempotencyRecord, *, ttl_s: float
    ) -> IdempotencyRecord | None:
        now = self._clock()
        self._expire(now)
        existing = self._records.get((scope, key))
        if existing is not None and existing[0] > now:
            return existing[1]
        deadline = now + ttl_s
        self._records[(scope, key)] = (deadline, record)
        heapq.heappush(self._deadlines, (deadline, (scope, key)))
        return None

    async def forget(self, scope: str, key: str, *, ref: str) -> None:
        existing = self._records.get((scope, key))
        if existing is not None and existing[1].ref == ref:
            del self._records[(scope, key)]

    def _expire(self, now: float) -> None:
        while self._deadlines and (
            self._deadlines[0][0] <= now or len(self._records) > self._max_records
        ):
            deadline, k = heapq.heappop(self._deadlines)
            current = self._records.get(k)
            if current is not None and current[0] == deadline:
                del self._records[k]  # else: forgotten or re-reserved since
