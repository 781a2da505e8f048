"""Admission control for `PARLEY_MAX_CONCURRENT_EXECUTIONS`."""

from __future__ import annotations

from collections import Counter

from app.errors import TooManyExecutions


class ExecutionLimiter:
    """Caps the conversations executing turns in this process.

    Turns of one conversation run one at a time, so a conversation with a queue of waiting
    sends is one execution, however long its queue: the cap bounds provider calls in flight,
    not callers. A new conversation beyond the cap is refused with 429 and `Retry-After`.
    0 means unlimited.
    """

    def __init__(self, limit: int, retry_after_s: int = 1) -> None:
        self._limit = limit
        self._retry_after_s = retry_after_s
        self._active: Counter[str] = Counter()

    @property
    def executing(self) -> int:
        return len(self._active)

    def admit(self, conversation_id: str) -> None:
        if self._limit and conversation_id not in self._active and len(self._active) >= self._limit:
            raise TooManyExecutions(
                f"{self._limit} conversations are already executing; retry shortly.",
                headers={"Retry-After": str(self._retry_after_s)},
            )
        self._active[conversation_id] += 1

    def release(self, conversation_id: str) -> None:
        self._active[conversation_id] -= 1
        if self._active[conversation_id] <= 0:
            del self._active[conversation_id]
