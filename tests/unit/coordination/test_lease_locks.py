"""LeaseLocks over a scripted in-memory backend: renewal, loss, cancellation, local queueing."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.coordination.lease_backend import Attempt, LeaseBackend, LeaseId, LeaseTiming
from app.coordination.lease_locks import LeaseLocks
from app.errors import ConversationBusy, StoreUnavailable

FAST = LeaseTiming(lease_s=0.3, poll_min_s=0.005, poll_max_s=0.02)


class FakeBackend(LeaseBackend):
    """Leases in a dict; `down` makes every call fail like an unreachable server."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.leases: dict[str, tuple[LeaseId, float]] = {}
        self.down = False
        self.latency_s = latency_s
        self.attempts = 0
        self.renewals = 0

    async def _call(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.down:
            raise StoreUnavailable("down")

    def _live(self, conversation_id: str) -> LeaseId | None:
        entry = self.leases.get(conversation_id)
        return entry[0] if entry and entry[1] > time.monotonic() else None

    async def try_acquire(self, lease: LeaseId, lease_s: float) -> Attempt:
        self.attempts += 1
        await self._call()
        current = self._live(lease.conversation_id)
        if current is not None:
            return Attempt(False, holder=current.run_id)
        self.leases[lease.conversation_id] = (lease, time.monotonic() + lease_s)
        return Attempt(True)

    async def renew(self, lease: LeaseId, lease_s: float) -> bool:
        self.renewals += 1
        await self._call()
        if self._live(lease.conversation_id) != lease:
            return False
        self.leases[lease.conversation_id] = (lease, time.monotonic() + lease_s)
        return True

    async def release(self, lease: LeaseId) -> bool:
        await self._call()
        if self.leases.get(lease.conversation_id, (None, 0))[0] == lease:
            del self.leases[lease.conversation_id]
            return True
        return False

    async def holder(self, conversation_id: str) -> str | None:
        await self._call()
        current = self._live(conversation_id)
        return current.run_id if current else None


async def test_renewal_keeps_the_lease() -> None:
    backend = FakeBackend()
    locks = LeaseLocks(backend, FAST)
    lease = await locks.acquire("c", "r1", wait_s=0)
    await asyncio.sleep(0.7)
    assert not lease.lost and backend.renewals >= 5
    assert await locks.holder("c") == "r1"
    await lease.release()
    assert backend.leases == {}
    await locks.close()


async def test_a_lease_is_lost_when_renewal_fails_longer_than_the_lease() -> None:
    backend = FakeBackend()
    locks = LeaseLocks(backend, FAST)
    lease = await locks.acquire("c", "r1", wait_s=0)
    backend.down = True
    await asyncio.sleep(0.2)
    assert not lease.lost  # a short outage is ridden out
    await asyncio.sleep(0.2)
    assert lease.lost
    backend.down = False
    await asyncio.sleep(0.2)
    assert lease.lost  # stays lost, even once renewals could succeed again
    await lease.release()
    await locks.close()


async def test_a_lease_is_lost_when_its_token_is_gone() -> None:
    backend = FakeBackend()
    locks = LeaseLocks(backend, LeaseTiming(lease_s=0.9))
    lease = await locks.acquire("c", "r1", wait_s=0)
    backend.leases.clear()  # e.g. expired while the process was frozen, and taken over
    await asyncio.sleep(0.4)  # one renewal period (lease / 3), well within the lease
    assert lease.lost
    await lease.release()
    await locks.close()


async def test_lost_by_the_clock_even_without_a_renewal_task() -> None:
    locks = LeaseLocks(FakeBackend(), FAST)
    lease = await locks.acquire("c", "r1", wait_s=0)
    lease._renewal.cancel()  # type: ignore[attr-defined]
    assert not lease.lost
    await asyncio.sleep(0.35)
    assert lease.lost
    await locks.close()


async def test_release_while_the_backend_is_down_does_not_raise() -> None:
    backend = FakeBackend()
    locks = LeaseLocks(backend, FAST)
    lease = await locks.acquire("c", "r1", wait_s=0)
    backend.down = True
    await lease.release()
    backend.down = False
    # the local gate is free: a local waiter gets the lock as soon as the lease expires
    again = await locks.acquire("c", "r2", wait_s=2)
    await again.release()
    await locks.close()


async def test_only_the_head_of_the_local_queue_polls() -> None:
    backend = FakeBackend()
    locks = LeaseLocks(backend, LeaseTiming(lease_s=5.0, poll_min_s=0.01, poll_max_s=0.01))
    other = LeaseLocks(backend, LeaseTiming(lease_s=5.0))  # "another instance" holds it
    held = await other.acquire("c", "remote", wait_s=0)
    backend.attempts = 0
    waiters = [asyncio.create_task(locks.acquire("c", f"w{i}", wait_s=5)) for i in range(5)]
    await asyncio.sleep(0.3)
    assert backend.attempts <= 40  # ~1 poller every 5-10 ms, not 5 of them
    await held.release()
    for waiter in waiters:
        lease = await asyncio.wait_for(waiter, timeout=3)
        await lease.release()
    assert locks._gates == {}  # type: ignore[attr-defined]
    await locks.close()
    await other.close()


async def test_an_attempt_cancelled_in_flight_is_undone() -> None:
    backend = FakeBackend(latency_s=0.05)
    locks = LeaseLocks(backend, FAST)
    task = asyncio.create_task(locks.acquire("c", "r1", wait_s=1))
    await asyncio.sleep(0.02)  # the backend call is in flight: it will take the lock
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.15)  # the background undo
    assert backend.leases == {}
    assert locks._gates == {}  # type: ignore[attr-defined]
    await locks.close()


async def test_backend_errors_while_waiting_surface_at_once() -> None:
    backend = FakeBackend()
    locks = LeaseLocks(backend, FAST)
    held = await locks.acquire("c", "r1", wait_s=0)
    backend.down = True
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await LeaseLocks(backend, FAST).acquire("c", "r2", wait_s=5)
    assert time.monotonic() - started < 0.5
    backend.down = False
    await held.release()
    await locks.close()


async def test_local_gate_timeout_names_the_holder() -> None:
    locks = LeaseLocks(FakeBackend(), FAST)
    held = await locks.acquire("c", "r1", wait_s=0)
    first = asyncio.create_task(locks.acquire("c", "r2", wait_s=0.2))
    await asyncio.sleep(0.01)
    with pytest.raises(ConversationBusy) as exc:
        await locks.acquire("c", "r3", wait_s=0.1)  # times out queued behind `first`
    assert exc.value.extra == {"run_id": "r1"}
    with pytest.raises(ConversationBusy):
        await first
    await held.release()
    await locks.close()
