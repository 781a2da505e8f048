"""`RunLog.create_and_publish_locking`: a run's creation with one try at its turn lock. On
a single Redis server both are one script (one round trip instead of two); elsewhere the
run is created as by `create_and_publish` and no lock is taken (the executor acquires as
before). Whatever the backend: a lock another run holds is left alone, a waiter of this
process is not overtaken, the lease's stamp is the lock's, and a creation that fails or
is cancelled in flight leaves the lock free."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from app.coordination.base import Coordinator, RunRecord, TurnLease
from app.coordination.lease_locks import LeaseLocks
from app.coordination.redis import RedisCoordinator
from app.coordination.redis_runs import RedisRunLog
from app.domain import Run
from app.errors import StoreUnavailable
from tests.contract.coordination import test_coordination_end_releasing as end_releasing

# the backends of the end's suite (every coordinator), and its command counter
backend = end_releasing.backend
coordinator = end_releasing.coordinator
_unpatch = end_releasing._unpatch
_count_commands = end_releasing._count_commands


def _record(run_id: str, conversation_id: str) -> RunRecord:
    run = Run(
        id=run_id, conversation_id=conversation_id, created_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return RunRecord(run=run, lineage_id="lin-1")


def _one_server(coordinator: Coordinator) -> bool:
    return isinstance(coordinator, RedisCoordinator) and not isinstance(
        coordinator._clients.command, RedisCluster
    )


async def _create(coordinator: Coordinator, run_id: str, conversation_id: str) -> TurnLease | None:
    event, lease = await coordinator.runs.create_and_publish_locking(
        coordinator.locks, _record(run_id, conversation_id), "run.created", {"run": run_id}
    )
    assert (event.seq, event.type) == (1, "run.created")
    return lease


async def test_the_creation_takes_a_free_lock_in_the_same_round_trip(
    coordinator: Coordinator,
) -> None:
    locks, runs = coordinator.locks, coordinator.runs
    first = await _create(coordinator, "run-0", "conv-0")  # (loads the scripts)
    if first is not None:
        await first.release()
    sent = _count_commands(coordinator)
    lease = await _create(coordinator, "run-1", "conv-1")
    if _one_server(coordinator):
        assert sent == ["EVALSHA"], sent
        assert lease is not None and lease.run_id == "run-1"
    elif isinstance(coordinator, RedisCoordinator):  # a cluster: as `create_and_publish`
        assert lease is None and sent == ["EVALSHA", "EVALSHA"], sent
    if lease is None:  # (no try here: the executor's usual acquisition)
        lease = await locks.acquire("conv-1", "run-1", wait_s=0)
    assert await locks.holder("conv-1") == "run-1"
    saved = await runs.get("run-1")
    assert saved is not None and saved.run.conversation_id == "conv-1"
    with pytest.raises(Exception, match="running another turn"):
        await locks.acquire("conv-1", "run-2", wait_s=0)
    await lease.release()
    assert await locks.holder("conv-1") is None
    # released cleanly: the stamp is the lease's, and the next lease proves nobody came
    stamp = locks.stamp("conv-1")
    nxt = await _create(coordinator, "run-3", "conv-1")
    nxt = nxt or await locks.acquire("conv-1", "run-3", wait_s=0)
    if stamp is not None:
        assert nxt.stamp_before == stamp
    await nxt.release()


async def test_a_lock_held_by_another_run_is_left_alone(coordinator: Coordinator) -> None:
    locks, runs = coordinator.locks, coordinator.runs
    other = await locks.acquire("conv-1", "run-9", wait_s=0)
    assert await _create(coordinator, "run-1", "conv-1") is None
    assert await locks.holder("conv-1") == "run-9"
    assert await runs.get("run-1") is not None  # the run is created all the same
    await other.release()
    # nothing of the try is left behind here: the lock is taken at once
    lease = await locks.acquire("conv-1", "run-1", wait_s=1)
    assert await locks.holder("conv-1") == "run-1"
    await lease.release()
    if isinstance(locks, LeaseLocks):
        assert locks._gates == {} and locks._held == {}


async def test_a_waiter_of_this_process_is_not_overtaken(coordinator: Coordinator) -> None:
    locks = coordinator.locks
    held = await locks.acquire("conv-1", "run-8", wait_s=1)  # (holds the local queue)
    waiter = asyncio.create_task(locks.acquire("conv-1", "run-9", wait_s=5))
    await asyncio.sleep(0.02)
    assert await _create(coordinator, "run-1", "conv-1") is None
    await held.release()
    second = await waiter  # first in the queue: it gets the lock
    assert await locks.holder("conv-1") == "run-9"
    await second.release()


class _Interrupted(Exception):
    pass


def _slow_step(coordinator: Coordinator, outcome: str) -> asyncio.Event:
    """The creation's script runs, then its caller waits (`outcome` "cancel") or its
    reply is lost (`outcome` "lost": the step fails after the script ran)."""
    runs = coordinator.runs
    assert isinstance(runs, RedisRunLog) and runs._create_locking is not None
    real = runs._create_locking
    ran = asyncio.Event()

    async def step(**kwargs: Any) -> Any:
        reply = await real(**kwargs)
        ran.set()
        if outcome == "lost":
            raise StoreUnavailable("the reply was lost (simulated)")
        await asyncio.sleep(0.05)
        return reply

    runs._create_locking = step  # type: ignore[assignment]
    return ran


async def assert_cut_short_creation_frees_the_lock(
    coordinator: Coordinator, ran: asyncio.Event, outcome: str
) -> None:
    """A creation whose step took the lock (`ran` set once it has) and is then cancelled
    or lost (`outcome`, as the slow step was built for) leaves the lock free, undone in
    the background, with no gate or held lease left behind."""
    locks = coordinator.locks
    assert isinstance(locks, LeaseLocks)
    task = asyncio.create_task(_create(coordinator, "run-1", "conv-1"))
    await ran.wait()
    assert await locks.holder("conv-1") == "run-1"  # the step took it
    if outcome == "cancel":
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with pytest.raises(StoreUnavailable):
            await task
    for _ in range(100):  # undone in the background
        if await locks.holder("conv-1") is None and not locks._gates:
            break
        await asyncio.sleep(0.01)
    assert await locks.holder("conv-1") is None
    assert locks._gates == {} and locks._held == {}
    lease = await locks.acquire("conv-1", "run-2", wait_s=0)
    await lease.release()


@pytest.mark.parametrize("outcome", ["cancel", "lost"])
async def test_a_creation_cut_short_leaves_the_lock_free(
    coordinator: Coordinator, outcome: str
) -> None:
    if not _one_server(coordinator):
        pytest.skip("only a single Redis server takes the lock with the creation")
    await assert_cut_short_creation_frees_the_lock(
        coordinator, _slow_step(coordinator, outcome), outcome
    )
