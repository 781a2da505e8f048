"""`RunLog.save_and_publish_releasing`: a run's end with its turn lock. The lock is free
by the time the terminal event can be seen, the record is saved and the event published,
on every backend; on a single Redis server all of it is one round trip (the lock's
compare-and-delete in the end's script) instead of two. The lease's bookkeeping follows
(its stamp, the local queue of waiters)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio.cluster import RedisCluster

from app.coordination.base import Coordinator
from app.coordination.memory import MemoryIdempotencyKeys, MemoryRunLog, MemoryTurnLocks
from app.coordination.redis import RedisCoordinator, redis_coordinator
from app.domain import RunStatus
from tests.contract.coordination.conftest import cluster_test_url, fresh_redis
from tests.contract.coordination.test_coordination_runs import collect, new_record


@pytest_asyncio.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", id="redis-cluster", marks=pytest.mark.redis),
    ]
)
async def coordinator(request: pytest.FixtureRequest) -> AsyncIterator[Coordinator]:
    if request.param == "memory":
        yield Coordinator(MemoryTurnLocks(), MemoryIdempotencyKeys(), MemoryRunLog())
        return
    url = cluster_test_url(request) if request.param == "redis-cluster" else None
    async with AsyncExitStack() as stack:
        coord = redis_coordinator(url or await fresh_redis(stack), event_retention_s=60)
        stack.push_async_callback(coord.close)
        yield coord


def _count_commands(coord: Coordinator) -> list[str]:
    """The commands the coordinator's client sends from now on (Redis only)."""
    sent: list[str] = []
    if isinstance(coord, RedisCoordinator):
        client: Any = coord._clients.command
        original = client.execute_command

        async def counted(*args: Any, **options: Any) -> Any:
            sent.append(str(args[0]).upper())
            return await original(*args, **options)

        client.execute_command = counted
    return sent


async def _ended(coordinator: Coordinator, n: int) -> list[str]:
    """Run `run-n` of `conv-n` ended with its lock; the commands of the end."""
    locks, runs = coordinator.locks, coordinator.runs
    record = new_record(f"run-{n}")
    await runs.create(record)
    lease = await locks.acquire(f"conv-{n}", f"run-{n}", wait_s=0)
    ended = record.model_copy(
        update={"run": record.run.model_copy(update={"status": RunStatus.completed})}
    )
    sent = _count_commands(coordinator)
    event = await runs.save_and_publish_releasing(lease, ended, "run.completed", {"ok": 1})
    assert event.type == "run.completed"
    await lease.release()  # released already: a no-op
    return sent


async def test_the_end_frees_the_lock_saves_and_publishes(coordinator: Coordinator) -> None:
    locks, runs = coordinator.locks, coordinator.runs
    await _ended(coordinator, 1)  # (loads the scripts)
    sent = await _ended(coordinator, 2)
    if isinstance(coordinator, RedisCoordinator):  # one round trip on a single server
        one_server = not isinstance(coordinator._clients.command, RedisCluster)
        assert sent == (["EVALSHA"] if one_server else ["EVALSHA", "EVALSHA"]), sent
    assert await locks.holder("conv-2") is None
    saved = await runs.get("run-2")
    assert saved is not None and saved.run.status == RunStatus.completed
    assert [e.type for e in await collect(runs, "run-2")] == ["run.completed"]
    # the lease's bookkeeping ran: the lock is taken again at once (no wait on a local
    # queue), and the stamp proves nobody held it in between
    stamp = locks.stamp("conv-2")
    again = await locks.acquire("conv-2", "run-3", wait_s=1)
    if stamp is not None:
        assert again.stamp_before == stamp
    await again.release()


async def test_a_lock_taken_over_is_not_freed(coordinator: Coordinator) -> None:
    """The release only deletes the lock while it is the lease's (compare-and-delete)."""
    if not isinstance(coordinator, RedisCoordinator):
        pytest.skip("in-process locks cannot be taken over")
    locks, runs = coordinator.locks, coordinator.runs
    record = new_record("run-1")
    await runs.create(record)
    lease = await locks.acquire("conv-1", "run-1", wait_s=0)
    client: Any = coordinator._clients.command
    key = f"{coordinator._clients.prefix}lock:{{conv-1}}"
    await client.set(key, "someone-else:run-9")  # (as if it expired and was taken)
    await runs.save_and_publish_releasing(lease, record, "run.completed", {})
    assert await locks.holder("conv-1") == "run-9"
    assert [e.type for e in await collect(runs, "run-1")] == ["run.completed"]
