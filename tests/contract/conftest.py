"""The `store` fixture: every contract test runs once per registered backend.

Backends: `memory`, `sqlite`, `postgres` (PARLEY_TEST_DATABASE_URL), `redis`
(PARLEY_TEST_REDIS_URL, a fresh key prefix per test) and `redis-cluster` (a private
3-node Redis Cluster started for the session from `redis-server` on PATH, see
`tests.contract.cluster`). A missing service skips locally and fails under CI=true.

Adding a backend is one entry in `BACKENDS`: a `resource` and an `open_store`.

`resource` runs once per test session (servers, scratch databases) and yields whatever
`open_store` needs; `open_store` runs before every test and must return an opened store
with no data in it. Tests branch on `store.capabilities`, never on the backend name.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from app.stores.base import StateStore
from app.stores.memory import MemoryStore
from app.stores.redis import RedisStore
from app.stores.sql import SqlStore
from app.stores.sql_tables import (
    checkpoints,
    conversations,
    media,
    media_refs,
    messages,
    packs,
    summaries,
)
from tests.contract.cluster import delete_prefixed, redis_cluster
from tests.services import check_redis, redis_url, scratch_postgres_database


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
        for table in (summaries, media_refs, checkpoints, messages, conversations, packs, media):
            await conn.execute(sa.delete(table))
    return store


@dataclass(frozen=True)
class _RedisTarget:
    url: str
    prefix: str  # this session's; each test gets its own key prefix below it


@asynccontextmanager
async def _redis_server(_: pytest.TempPathFactory) -> AsyncIterator[_RedisTarget]:
    """The configured server (PARLEY_TEST_REDIS_URL, db 13). Tests share it with other
    suites, so each test works under its own key prefix instead of FLUSHDB; this
    session's keys are deleted at the end."""
    url = redis_url()
    await check_redis(url)
    target = _RedisTarget(url, f"parley-test:{uuid.uuid4().hex[:12]}:")
    try:
        yield target
    finally:
        await delete_prefixed(url, target.prefix)


@asynccontextmanager
async def _redis_cluster(tmp: pytest.TempPathFactory) -> AsyncIterator[_RedisTarget]:
    """A private 3-node Redis Cluster for the session (torn down at the end). Started and
    stopped in a thread: the session's event loop may be running other suites' tasks."""
    cm = redis_cluster(tmp.mktemp("redis-cluster"))
    cluster = await asyncio.to_thread(cm.__enter__)
    try:
        yield _RedisTarget(cluster.url, "parley-test:")
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


async def _redis_store(target: _RedisTarget) -> StateStore:
    """A fresh key prefix per test: an empty store without flushing anything."""
    store = RedisStore(target.url, prefix=f"{target.prefix}{uuid.uuid4().hex[:12]}:")
    await store.open()
    return store


BACKENDS: dict[str, Backend] = {
    "memory": Backend(resource=_no_resource, open_store=_memory_store),
    "sqlite": Backend(resource=_sqlite_file, open_store=_sql_store),
    "postgres": Backend(
        resource=_postgres_database, open_store=_sql_store, marks=(pytest.mark.postgres,)
    ),
    "redis": Backend(resource=_redis_server, open_store=_redis_store, marks=(pytest.mark.redis,)),
    "redis-cluster": Backend(
        resource=_redis_cluster, open_store=_redis_store, marks=(pytest.mark.redis,)
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
