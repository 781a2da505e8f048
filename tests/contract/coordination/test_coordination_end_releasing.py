"""`RunLog.save_and_publish_releasing`: a run's end with its turn lock. The lock is free
by the time the terminal event can be seen, the record is saved and the event published,
on every backend; on a single Redis server all of it is one round trip (the lock's
compare-and-delete in the end's script) instead of two. The lease's bookkeeping follows
(its stamp, the local queue of waiters)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import sqlalchemy as sa
from redis.asyncio.cluster import RedisCluster

from app.coordination.base import Coordinator
from app.coordination.factory import SqlCoordinator
from app.coordination.memory import MemoryRunLog
from app.coordination.memory_idempotency import MemoryIdempotencyKeys
from app.coordination.memory_locks import MemoryTurnLocks
from app.coordination.redis import RedisCoordinator, redis_coordinator
from app.domain import RunStatus
from app.stores.sql import SqlStore
from app.stores.sql_tables import turn_leases
from tests.contract.coordination.conftest import (
    clear_sql_coordination,
    cluster_test_url,
    fresh_redis,
)
from tests.contract.coordination.test_coordination_runs import collect, new_record


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", id="redis-cluster", marks=pytest.mark.redis),
        pytest.param("sql-sqlite", id="sql-sqlite"),
        pytest.param("sql-postgres", id="sql-postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(A sync fixture: session resources are made outside any loop, see conftest.)"""
    name = str(request.param)
    if name == "sql-postgres":
        return name, str(request.getfixturevalue("postgres_scratch"))
    if name == "sql-sqlite":
        return name, f"sqlite+aiosqlite:///{tmp_path}/coordination.db"
    if name == "redis-cluster":
        return name, cluster_test_url(request)
    return name, None


@pytest_asyncio.fixture
async def coordinator(backend: tuple[str, str | None]) -> AsyncIterator[Coordinator]:
    name, url = backend
    if name == "memory":
        yield Coordinator(MemoryTurnLocks(), MemoryIdempotencyKeys(), MemoryRunLog())
        return
    if name.startswith("sql"):
        assert url is not None
        await clear_sql_coordination(url)
        store = SqlStore(url)
        await store.open()
        coord = SqlCoordinator(store.engine, event_retention_s=60)
        try:
            yield coord
        finally:
            await coord.close()
            await store.close()
        return
    async with AsyncExitStack() as stack:
        coord = redis_coordinator(url or await fresh_redis(stack), event_retention_s=60)
        stack.push_async_callback(coord.close)
        yield coord


def _count_commands(coord: Coordinator) -> list[str]:
    """The commands the coordinator's client sends from now on (Redis), or the
    statements it runs on asyncpg (PostgreSQL: the turn's statements run there)."""
    sent: list[str] = []
    if isinstance(coord, SqlCoordinator):
        for name in ("execute", "fetch", "fetchrow", "fetchval"):
            original = getattr(asyncpg.Connection, name)

            def recording(original: Any = original) -> Any:
                async def run(self: Any, query: str, *args: Any, **kw: Any) -> Any:
                    sent.append(query.split()[0].upper())
                    return await original(self, query, *args, **kw)

                return run

            _patched.append((name, original))
            setattr(asyncpg.Connection, name, recording())
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


_patched: list[tuple[str, Any]] = []


@pytest.fixture(autouse=True)
def _unpatch() -> Iterator[None]:
    yield
    while _patched:
        name, original = _patched.pop()
        setattr(asyncpg.Connection, name, original)


async def test_the_end_frees_the_lock_saves_and_publishes(coordinator: Coordinator) -> None:
    locks, runs = coordinator.locks, coordinator.runs
    await _ended(coordinator, 1)  # (loads the scripts)
    sent = await _ended(coordinator, 2)
    if isinstance(coordinator, RedisCoordinator):  # one round trip on a single server
        one_server = not isinstance(coordinator._clients.command, RedisCluster)
        assert sent == (["EVALSHA"] if one_server else ["EVALSHA", "EVALSHA"]), sent
    if isinstance(coordinator, SqlCoordinator) and sent:  # PostgreSQL: one statement
        assert sent == ["WITH"], sent  # (the lease's UPDATE was a statement of its own)
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
    """The release only frees the lock while it is the lease's (compare-and-delete)."""
    shared_sql = isinstance(coordinator, SqlCoordinator) and coordinator._leases is not None
    if not isinstance(coordinator, RedisCoordinator) and not shared_sql:
        pytest.skip("in-process locks cannot be taken over")
    locks, runs = coordinator.locks, coordinator.runs
    record = new_record("run-1")
    await runs.create(record)
    lease = await locks.acquire("conv-1", "run-1", wait_s=0)
    # (as if it expired and was taken)
    if isinstance(coordinator, RedisCoordinator):
        client: Any = coordinator._clients.command
        key = f"{coordinator._clients.prefix}lock:{{conv-1}}"
        await client.set(key, "someone-else:run-9")
    else:
        assert isinstance(coordinator, SqlCoordinator)
        async with coordinator._engine.begin() as conn:
            await conn.execute(
                sa.update(turn_leases)
                .where(turn_leases.c.conversation_id == "conv-1")
                .values(token="someone-else", run_id="run-9")
            )
    ended = record.model_copy(
        update={"run": record.run.model_copy(update={"status": RunStatus.completed})}
    )
    await runs.save_and_publish_releasing(lease, ended, "run.completed", {})
    assert await locks.holder("conv-1") == "run-9"
    assert [e.type for e in await collect(runs, "run-1")] == ["run.completed"]
