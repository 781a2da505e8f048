"""Admission: how many requests of this instance open turns or create conversations at once.

Under overload (more concurrent streams than one event loop can serve) every request that
was let in at once competes for the loop: a ready queue of a thousand tasks delays each
task's resumption by seconds, so store and coordination calls time out although the store
answered at once (503 `store_unavailable`), and whoever the scheduler happens to starve
waits past the client's timeout. The gate lets `concurrency` of them do their store work at
a time and queues the rest in arrival order (`asyncio.Semaphore` wakes waiters FIFO), so
overload shows as queueing latency, evenly spread, instead of errors. Waiting longer than
`timeout_s` is 503 `overloaded` with `Retry-After`. Only the opening is gated: a run's
streaming and commit happen after it, and a request waiting for a run's result, or for
another request's run to exist (`paused`), holds no slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from app.errors import Overloaded

DEFAULT_CONCURRENCY = 32
# A store whose calls share a bounded pool (PostgreSQL: 30 connections by default) gets a
# gate of a quarter of it. An admitted opening makes ~4 store calls one after the other, and
# the runs it starts make ~3 more past the gate (the commit, the run's end, the turn lock's
# release), each holding its connection for the event loop's lag rather than the statement's
# time (~33 ms a call at 250 streams on 2 cores, against < 1 ms in PostgreSQL). With a gate
# of 32 the openings let in more runs than the pool serves, the calls of every run queue
# for a connection past the store timeout and turns fail with 503 `store_unavailable`
# (bench/frameworks.py, fast profile: 75 errors at 250 streams, 517 at 500); with a quarter
# of the pool they queue at the gate instead, at the same req/s, and none fails.
CONNECTIONS_PER_SLOT = 4


def gate_size(configured: int | None, connection_limit: int | None) -> int:
    """The gate's concurrency: `PARLEY_ADMISSION_CONCURRENCY` when set; else 32, or, for a
    store with a bounded pool of `connection_limit` connections, a quarter of it (at least
    1) when that is smaller."""
    if configured is not None:
        return configured
    if connection_limit is None:
        return DEFAULT_CONCURRENCY
    return max(1, min(DEFAULT_CONCURRENCY, connection_limit // CONNECTIONS_PER_SLOT))


class AdmissionGate:
    """`concurrency` 0 admits everyone at once (no gate)."""

    def __init__(self, concurrency: int, timeout_s: float, retry_after_s: int = 1) -> None:
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency) if concurrency else None
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        # the task holding a slot in this context (`paused` hands it back meanwhile): the
        # task, not a flag, because tasks created inside `admit` (a turn's run) inherit the
        # context, and they neither hold that slot nor may release it
        self._held: ContextVar[asyncio.Task[Any] | None] = ContextVar(
            f"parley-admission-{id(self)}", default=None
        )
        self.waiting = 0  # queued for a slot
        self.active = 0  # holding one

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a slot for the block. Re-entrant: a task that holds one already (an
        import that creates its conversation) takes no second one."""
        if self._slots is None or self._holds():
            yield
            return
        await self._acquire()
        token = self._held.set(asyncio.current_task())
        try:
            yield
        finally:
            if self._holds():  # (not if a `paused` could not take one again)
                self._release()
            self._held.reset(token)

    def _holds(self) -> bool:
        held = self._held.get()
        return held is not None and held is asyncio.current_task()

    @asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hand this task's slot back while it waits for another request's progress (not
        store work of its own: a same-`Idempotency-Key` retry waiting for the first
        request's run), and take one again after, in line like a new request
        (`Overloaded` past the timeout). Outside `admit`, or without a gate: nothing."""
        if self._slots is None or not self._holds():
            yield
            return
        self._release()
        self._held.set(None)
        yield  # (an error here leaves the task without a slot: `admit` releases none)
        await self._acquire()
        self._held.set(asyncio.current_task())

    async def _acquire(self) -> None:
        assert self._slots is not None
        self.waiting += 1
        try:
            # (`asyncio.timeout`, not `wait_for`: on 3.11 `wait_for` runs the acquire in a
            # task of its own, a task and a loop iteration more for every turn)
            async with asyncio.timeout(self._timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise Overloaded(
                f"The instance is overloaded: no slot for this request within "
                f"{self._timeout_s:g} s; retry shortly.",
                headers={"Retry-After": str(self._retry_after_s)},
            ) from None
        finally:
            self.waiting -= 1
        self.active += 1

    def _release(self) -> None:
        assert self._slots is not None
        self.active -= 1
        self._slots.release()
