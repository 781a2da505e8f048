"""Admission: how many requests of this instance open turns or create conversations at once.

Under overload (more concurrent streams than one event loop can serve) every request that
was let in at once competes for the loop: a ready queue of a thousand tasks delays each
task's resumption by seconds, so store and coordination calls time out although the store
answered at once (503 `store_unavailable`), and whoever the scheduler happens to starve
waits past the client's timeout. The gate lets `concurrency` of them do their store work at
a time and queues the rest in arrival order (`asyncio.Semaphore` wakes waiters FIFO), so
overload shows as queueing latency, evenly spread, instead of errors. Waiting longer than
`timeout_s` is 503 `overloaded` with `Retry-After`. Only the opening is gated: a run's
streaming and commit happen after it, and a request waiting for a run's result holds no slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import Overloaded


class AdmissionGate:
    """`concurrency` 0 admits everyone at once (no gate)."""

    def __init__(self, concurrency: int, timeout_s: float, retry_after_s: int = 1) -> None:
        self._slots = asyncio.Semaphore(concurrency) if concurrency else None
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self.waiting = 0  # queued for a slot
        self.active = 0  # holding one

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self._slots is None:
            yield
            return
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self._timeout_s)
        except TimeoutError:
            raise Overloaded(
                f"The instance is overloaded: no slot for this request within "
                f"{self._timeout_s:g} s; retry shortly.",
                headers={"Retry-After": str(self._retry_after_s)},
            ) from None
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._slots.release()
