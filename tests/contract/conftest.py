"""The `store` fixture: every contract test runs once per registered backend.

Adding a backend (e.g. `redis`, `redis-cluster`) is one entry in `BACKENDS`:

    async def _redis_resource(_: pytest.TempPathFactory) -> AsyncIterator[str]:
        url = redis_url()              # tests.services: skip locally / fail under CI=true
        await check_redis(url)
        yield url

    async def _redis_store(url: str) -> StateStore:
        store = RedisStore(url)        # a fresh, opened, *empty* store
        await store.open()
        await store.flush_for_tests()  # or FLUSHDB on a dedicated db / key prefix
        return store

    BACKENDS["redis"] = Backend(
        resource=_redis_resource, open_store=_redis_store, marks=(pytest.mark.redis,)
    )

`resource` runs once per test session (servers, scratch databases) and yields whatever
`open_store` needs; `open_store` runs before every test and must return an opened store
with no data in it. Tests branch on `store.capabilities`, never on the backend name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from app.stores.base import StateStore
from app.stores.memory import MemoryStore
from app.stores.sql import SqlStore
from app.stores.sql_tables import checkpoints, conversations, messages, packs
from tests.services import scratch_postgres_database


@dataclass(frozen=True)
class Backend:
    resource: Callable[[pytest.TempPathFactory], AbstractAsyncContextManager[Any]]
    open_store: Callable[[Any], Awaitable[StateStore]]
    marks: tuple[pytest.MarkDecorator, ...] = ()


@asynccontextmanager
async def _no_resource(_: pytest.TempPathFactory) -> AsyncIterator[None]:
    yield None


async def _memory_store(_: None) -> StateStore:
    return MemoryStore()


@asynccontextmanager
async def _sqlite_file(tmp: pytest.TempPathFactory) -> AsyncIterator[str]:
    yield f"sqlite+aiosqlite:///{tmp.mktemp('contract-sqlite')}/parley.db"


@asynccontextmanager
async def _postgres_database(_: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with scratch_postgres_database() as url:
        yield url


async def _sql_store(url: str) -> StateStore:
    """Open (migrations run once per database, then are a no-op) and empty the tables:
    much faster than a database per test."""
    store = SqlStore(url)
    await store.open()
    async with store.engine.begin() as conn:
        for table in (checkpoints, messages, conversations, packs):
            await conn.execute(sa.delete(table))
    return store


BACKENDS: dict[str, Backend] = {
    "memory": Backend(resource=_no_resource, open_store=_memory_store),
    "sqlite": Backend(resource=_sqlite_file, open_store=_sql_store),
    "postgres": Backend(
        resource=_postgres_database, open_store=_sql_store, marks=(pytest.mark.postgres,)
    ),
}


@dataclass(frozen=True)
class _Prepared:
    backend: Backend
    resource: Any


@pytest_asyncio.fixture(
    scope="session",
    loop_scope="session",
    params=[pytest.param(name, marks=b.marks, id=name) for name, b in BACKENDS.items()],
)
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[_Prepared]:
    spec = BACKENDS[request.param]
    async with spec.resource(tmp_path_factory) as resource:
        yield _Prepared(spec, resource)


@pytest_asyncio.fixture
async def store(backend: _Prepared) -> AsyncIterator[StateStore]:
    s = await backend.backend.open_store(backend.resource)
    try:
        yield s
    finally:
        await s.close()
