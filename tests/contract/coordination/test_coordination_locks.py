"""TurnLocks contract: one turn per conversation, across instances (base.py docstrings)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from app.coordination.base import TurnLease
from app.coordination.lease_backend import LeaseTiming
from app.coordination.lease_locks import LeaseLocks
from app.errors import ConversationBusy
from tests.contract.coordination.conftest import LocksEnv


async def test_exclusive_and_try_once_names_the_holder(locks_env: LocksEnv) -> None:
    locks = await locks_env.new()
    lease = await locks.acquire("c1", "run-1", wait_s=0)
    assert lease.run_id == "run-1" and not lease.lost
    assert await locks.holder("c1") == "run-1"
    with pytest.raises(ConversationBusy) as exc:
        await locks.acquire("c1", "run-2", wait_s=0)
    assert exc.value.extra == {"run_id": "run-1"}
    other = await locks.acquire("c2", "run-3", wait_s=0)  # conversations are independent
    await lease.release()
    assert await locks.holder("c1") is None
    again = await locks.acquire("c1", "run-2", wait_s=0)
    assert await locks.holder("c1") == "run-2"
    await again.release()
    await other.release()


async def test_waiters_are_served_in_arrival_order(locks_env: LocksEnv) -> None:
    locks = await locks_env.new()
    first = await locks.acquire("c", "run-0", wait_s=0)
    served: list[str] = []

    async def wait_turn(run_id: str) -> None:
        lease = await locks.acquire("c", run_id, wait_s=10)
        served.append(run_id)
        await asyncio.sleep(0.005)
        await lease.release()

    waiters = []
    for i in range(1, 4):
        waiters.append(asyncio.create_task(wait_turn(f"run-{i}")))
        await asyncio.sleep(0.02)  # a definite arrival order
    assert served == []
    await first.release()
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=10)
    assert served == ["run-1", "run-2", "run-3"]
    assert await locks.holder("c") is None


async def test_wait_runs_out_with_conversation_busy(locks_env: LocksEnv) -> None:
    locks = await locks_env.new()
    lease = await locks.acquire("c", "run-1", wait_s=0)
    started = time.monotonic()
    with pytest.raises(ConversationBusy) as exc:
        await locks.acquire("c", "run-2", wait_s=0.2)
    elapsed = time.monotonic() - started
    assert 0.18 <= elapsed < 2.0
    assert exc.value.extra == {"run_id": "run-1"}
    await lease.release()


async def test_release_is_idempotent_and_never_frees_a_successor(locks_env: LocksEnv) -> None:
    locks = await locks_env.new()
    lease = await locks.acquire("c", "run-1", wait_s=0)
    await lease.release()
    await lease.release()
    successor = await locks.acquire("c", "run-2", wait_s=0)
    await lease.release()
    assert await locks.holder("c") == "run-2"
    with pytest.raises(ConversationBusy):
        await locks.acquire("c", "run-3", wait_s=0)
    await successor.release()


async def test_cancelled_waiters_leak_nothing(locks_env: LocksEnv) -> None:
    locks = await locks_env.new()
    holder = await locks.acquire("c", "run-0", wait_s=0)
    waiter = asyncio.create_task(locks.acquire("c", "run-w", wait_s=10))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await holder.release()
    lease = await locks.acquire("c", "run-1", wait_s=0)  # free at once
    await lease.release()

    # Cancel acquirers at random points, in flight to the backend included: whatever
    # they got is released, and the lock ends up free (cleanups run in the background).
    rng = random.Random(7)
    for i in range(15):
        task = asyncio.create_task(locks.acquire("c", f"run-x{i}", wait_s=5))
        await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.001, 0.003]))
        task.cancel()
        try:
            got: TurnLease = await task
        except asyncio.CancelledError:
            continue
        await got.release()
    final = await locks.acquire("c", "run-final", wait_s=3)
    assert await locks.holder("c") == "run-final"
    await final.release()


async def test_separate_instances_exclude_each_other(locks_env: LocksEnv) -> None:
    a, b = await locks_env.new(), await locks_env.new()
    lease = await a.acquire("c", "run-a", wait_s=0)
    assert await b.holder("c") == "run-a"
    with pytest.raises(ConversationBusy) as exc:
        await b.acquire("c", "run-b", wait_s=0)
    assert exc.value.extra == {"run_id": "run-a"}
    waiting = asyncio.create_task(b.acquire("c", "run-b", wait_s=10))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await lease.release()
    got = await asyncio.wait_for(waiting, timeout=5)
    assert await a.holder("c") == "run-b"
    await got.release()


async def test_no_lost_updates_across_instances(locks_env: LocksEnv) -> None:
    instances = [await locks_env.new(), await locks_env.new()]
    counter = 0
    inside = 0
    overlap = False

    async def increment(i: int) -> None:
        nonlocal counter, inside, overlap
        lease = await instances[i % 2].acquire("shared", f"run-{i}", wait_s=30)
        try:
            inside += 1
            overlap = overlap or inside > 1
            value = counter
            await asyncio.sleep(0.002)
            counter = value + 1
        finally:
            inside -= 1
            await lease.release()

    await asyncio.wait_for(asyncio.gather(*(increment(i) for i in range(20))), timeout=30)
    assert counter == 20 and not overlap


async def test_a_lease_outlives_its_duration_while_renewed(expiring_locks_env: LocksEnv) -> None:
    env = expiring_locks_env
    a, b = await env.new(LeaseTiming(lease_s=0.6)), await env.new()
    lease = await a.acquire("c", "run-a", wait_s=0)
    await asyncio.sleep(1.3)  # over twice the lease: kept alive by renewals only
    assert not lease.lost
    with pytest.raises(ConversationBusy):
        await b.acquire("c", "run-b", wait_s=0)
    await lease.release()


async def test_an_unrenewed_lease_expires_and_reports_lost(expiring_locks_env: LocksEnv) -> None:
    env = expiring_locks_env
    a, b = await env.new(LeaseTiming(lease_s=0.3)), await env.new()
    lease = await a.acquire("c", "run-a", wait_s=0)
    lease._renewal.cancel()  # type: ignore[attr-defined]  # the holder "freezes"
    started = time.monotonic()
    successor = await b.acquire("c", "run-b", wait_s=3)
    assert time.monotonic() - started >= 0.2
    assert lease.lost
    await lease.release()  # late release of the old holder: must not free the successor
    assert await b.holder("c") == "run-b"
    assert not successor.lost
    await successor.release()


async def test_a_renewal_arriving_after_the_expiry_revives_nothing(
    expiring_locks_env: LocksEnv,
) -> None:
    """A holder frozen past its lease (a partition that heals late) whose renewal then
    arrives: the renewal fails and the conversation is free at once. SQL re-extended the
    expired row by token, so the lock stayed held, by a lease its holder counted lost, for
    another whole lease (the instance's liveness lease: ~14 s of 503s after a partition,
    outside tester T2)."""
    env = expiring_locks_env
    a, b = await env.new(LeaseTiming(lease_s=0.3)), await env.new()
    assert isinstance(a, LeaseLocks)
    lease = await a.acquire("c", "run-a", wait_s=0)
    lease._renewal.cancel()  # type: ignore[attr-defined]  # the holder "freezes"
    await asyncio.sleep(0.6)
    assert not await a.backend.renew(lease.id, 0.3)  # type: ignore[attr-defined]
    assert await b.holder("c") is None
    successor = await b.acquire("c", "run-b", wait_s=0)
    assert await a.holder("c") == "run-b"
    await lease.release()
    await successor.release()
