"""build_coordinator: which coordination a configuration gets (no I/O involved)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy.ext.asyncio import create_async_engine

from app.coordination.factory import SqlCoordinator, build_coordinator
from app.coordination.local_fanout import LocalFanout
from app.coordination.memory import MemoryRunLog
from app.coordination.memory_idempotency import MemoryIdempotencyKeys
from app.coordination.memory_locks import MemoryTurnLocks
from app.coordination.redis import RedisCoordinator
from app.coordination.redis_client import connect, is_redis_url
from app.coordination.redis_idempotency import RedisIdempotencyKeys
from app.coordination.redis_locks import RedisTurnLocks
from app.coordination.redis_runs import RedisRunLog
from app.coordination.sql_idempotency import SqlIdempotencyKeys
from app.coordination.sql_locks import SqlLeaseLocks
from app.coordination.sql_runs import SqlRunLog
from app.stores.base import StoreCapabilities
from app.stores.memory import MemoryStore
from tests.conftest import make_settings


class EngineStore(MemoryStore):
    """Any store with the `sql_coordination` capability, as `SqlStore` once opened."""

    capabilities = StoreCapabilities(shared=True, sql_coordination=True)

    def __init__(self, engine: Any) -> None:
        super().__init__()
        self._engine = engine

    def sql_engine(self) -> Any:
        return self._engine


@pytest.mark.parametrize("state_url", ["memory://", "sqlite+aiosqlite:///./x.db"])
async def test_single_instance_state_means_in_process(tmp_path: Path, state_url: str) -> None:
    coord = build_coordinator(make_settings(tmp_path, state_url=state_url), MemoryStore())
    assert isinstance(coord.locks, MemoryTurnLocks)
    assert isinstance(coord.idempotency, MemoryIdempotencyKeys)
    assert isinstance(coord.runs, MemoryRunLog)
    await coord.close()


@pytest.mark.parametrize(
    ("settings", "client_type"),
    [
        ({"coordination_url": "redis://127.0.0.1:6390/2"}, Redis),
        ({"coordination_url": "rediss://:secret@cache.example:6380/0"}, Redis),
        ({"coordination_url": "redis+cluster://127.0.0.1:7000"}, RedisCluster),
        ({"coordination_url": "rediss+cluster://cache.example:7000"}, RedisCluster),
        ({"state_url": "redis://127.0.0.1:6390/3"}, Redis),
        (
            {"state_url": "postgresql+asyncpg://u@h/db", "coordination_url": "redis://h:1/0"},
            Redis,
        ),
    ],
)
async def test_redis_urls_give_the_redis_coordinator(
    tmp_path: Path, settings: dict[str, str], client_type: type
) -> None:
    coord = build_coordinator(make_settings(tmp_path, **settings), MemoryStore())
    assert isinstance(coord, RedisCoordinator)
    assert isinstance(coord.locks, RedisTurnLocks)
    assert isinstance(coord.idempotency, RedisIdempotencyKeys)
    assert isinstance(coord.runs, LocalFanout)  # this instance's followers read memory
    assert isinstance(coord.runs.inner, RedisRunLog)
    command = coord._clients.command  # type: ignore[attr-defined]
    assert isinstance(command, client_type)
    if client_type is Redis:  # PARLEY_REDIS_MAX_CONNECTIONS (default 1000)
        assert command.connection_pool.max_connections == 1000
    await coord.close()  # nothing was connected; closing is still clean


async def test_postgres_state_gives_sql_coordination(tmp_path: Path) -> None:
    engine = create_async_engine("postgresql+asyncpg://u@127.0.0.1:1/db")  # never connects
    settings = make_settings(tmp_path, state_url="postgresql+asyncpg://u@127.0.0.1:1/db")
    coord = build_coordinator(settings, EngineStore(engine))
    assert isinstance(coord, SqlCoordinator)
    assert isinstance(coord.locks, SqlLeaseLocks)
    assert isinstance(coord.idempotency, SqlIdempotencyKeys)
    assert isinstance(coord.runs, LocalFanout)
    assert isinstance(coord.runs.inner, SqlRunLog)
    await coord.close()
    await engine.dispose()


async def test_sqlite_state_keeps_keys_and_records_in_the_file(tmp_path: Path) -> None:
    """SQLite: one serving process, so turn locks stay in-process; idempotency keys and
    run records are in the database (they survive a restart)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    engine = create_async_engine(url)  # nothing connects before use
    coord = build_coordinator(make_settings(tmp_path, state_url=url), EngineStore(engine))
    assert isinstance(coord, SqlCoordinator)
    assert isinstance(coord.locks, MemoryTurnLocks)
    assert isinstance(coord.idempotency, SqlIdempotencyKeys)
    assert isinstance(coord.runs, SqlRunLog)
    await coord.close()
    await engine.dispose()


async def test_a_store_without_the_capability_gets_in_process_coordination(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, state_url="postgresql+asyncpg://u@127.0.0.1:1/db")
    coord = build_coordinator(settings, MemoryStore())
    assert isinstance(coord.locks, MemoryTurnLocks)


async def test_memory_coordination_url_forces_in_process(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, state_url="redis://h:1/0", coordination_url="memory://")
    coord = build_coordinator(settings, MemoryStore())
    assert isinstance(coord.locks, MemoryTurnLocks)


@pytest.mark.parametrize("url", ["http://h/", "postgresql+asyncpg://u@h/db", "nonsense"])
def test_other_coordination_urls_are_rejected(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="COORDINATION_URL"):
        build_coordinator(make_settings(tmp_path, coordination_url=url), MemoryStore())


def test_url_schemes() -> None:
    assert is_redis_url("redis://h") and is_redis_url("REDISS://h")
    assert is_redis_url("redis+cluster://h") and is_redis_url("rediss+cluster://h")
    assert not is_redis_url("sqlite+aiosqlite:///x.db") and not is_redis_url("memory://")
    with pytest.raises(ValueError, match="Unsupported"):
        connect("http://h/")


async def test_sqlite_run_log_keeps_events_within_the_configured_bounds(tmp_path: Path) -> None:
    """PARLEY_RUN_LOG_MAX_EVENTS / PARLEY_RUN_RECORDS_MAX reach the in-process event log
    of SQLite coordination (they did not: 100,000 events and 10,000 records in RAM)."""
    from app.coordination.base import RunRecord
    from app.domain import Run, utcnow
    from app.stores.factory import create_store

    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    store = create_store(url)
    await store.open()
    settings = make_settings(tmp_path, state_url=url, run_log_max_events=100, run_records_max=5)
    coord = build_coordinator(settings, store)
    try:
        for i in range(60):
            run = Run(id=f"r{i}", conversation_id="c", created_at=utcnow())
            await coord.runs.create(RunRecord(run=run, lineage_id="c"))
            for _ in range(4):
                await coord.runs.publish(run.id, "message.delta", {"delta": "x"})
            await coord.runs.publish(run.id, "run.completed", {})
        memory = coord.runs._memory  # type: ignore[attr-defined]
        assert memory._retained <= 100
        assert len(memory._runs) <= 20  # 5 events a run
        assert len(memory._ended) <= 5
        assert await coord.runs.get("r0") is not None  # the record is in the database
    finally:
        await coord.close()
        await store.close()
