"""Coordination backends of the contract suite: every test runs once per backend.

Every env runs on memory, Redis, a Redis Cluster, SQLite and PostgreSQL (the SQL
coordinator: lease rows, idempotency rows, run records, PostgreSQL event rows). Each
env's `new()` builds another *instance* of the service, as a second process would: its
own Redis client or its own SQL engine on the same database. The memory backend cannot be
shared between processes, so there `new()` returns the one instance (tests of
cross-instance behaviour then check the single-instance semantics); nor can the SQLite
run log (one serving process per file: its events are in-process).

Redis tests use the server and database named by `PARLEY_TEST_REDIS_URL`, each under a key
prefix of its own whose keys are deleted afterwards (`fresh_redis`); nothing is flushed. The Redis
Cluster (3 primaries on loopback ports, `tests.contract.cluster`) is started once per
session, each test again under its own key prefix. PostgreSQL tests use one scratch
database per session. Missing services skip locally and fail under `CI=true`
(`tests.services`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import sqlalchemy as sa

from app.coordination.base import IdempotencyKeys, RunLog, TurnLocks
from app.coordination.lease_backend import LeaseTiming
from app.coordination.memory import MemoryRunLog
from app.coordination.memory_idempotency import MemoryIdempotencyKeys
from app.coordination.memory_locks import MemoryTurnLocks
from app.coordination.redis_client import RedisClients, connect
from app.coordination.redis_idempotency import RedisIdempotencyKeys
from app.coordination.redis_locks import RedisTurnLocks
from app.coordination.redis_runs import RedisRunLog
from app.coordination.sql_idempotency import SqlIdempotencyKeys
from app.coordination.sql_locks import SqlLeaseLocks
from app.coordination.sql_runs import SqlRunLog
from app.stores.sql import SqlStore
from app.stores.sql_tables import (
    coordination_instances,
    idempotency_keys,
    run_events,
    run_records,
    turn_leases,
)
from tests.contract.cluster import delete_prefixed, redis_cluster
from tests.services import check_redis, redis_url, scratch_postgres_database


def coordination_redis_url() -> str:
    """`PARLEY_TEST_REDIS_URL` as configured (server and database)."""
    return redis_url()


def with_prefix(url: str, prefix: str) -> str:
    """`url` whose coordination keys (and cancel channel) all start with `prefix`."""
    return f"{url}{'&' if urlsplit(url).query else '?'}prefix={prefix}"


def unique_prefix() -> str:
    return f"coord-test-{uuid.uuid4().hex[:12]}:"


async def fresh_redis(stack: AsyncExitStack) -> str:
    """The configured db under a key prefix of this test's own; its keys are deleted after.

    Nothing is flushed: several runs of this suite (yours, a colleague's `make test`)
    may share the server at the same time, and a FLUSHDB of one would pull locks and
    streams from under the other."""
    url = coordination_redis_url()
    await check_redis(url)
    prefix = unique_prefix()

    stack.push_async_callback(delete_prefixed, url, prefix)
    return with_prefix(url, prefix)


def redis_clients(stack: AsyncExitStack, url: str) -> RedisClients:
    clients = connect(url)
    stack.push_async_callback(clients.aclose)
    return clients


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_cluster(tmp_path_factory.mktemp("coordination-cluster")) as cluster:
        yield cluster.url


def cluster_test_url(request: pytest.FixtureRequest) -> str:
    """The session's cluster, under a key prefix of this test's own."""
    return with_prefix(str(request.getfixturevalue("redis_cluster_url")), unique_prefix())


@pytest.fixture(scope="session")
def postgres_scratch() -> Iterator[str]:
    """One scratch database for the session, made on a private loop: only the tests that
    need PostgreSQL request it (through `getfixturevalue`), whichever loop they run on."""
    loop = asyncio.new_event_loop()
    scratch = scratch_postgres_database()
    try:
        yield loop.run_until_complete(scratch.__aenter__())
        loop.run_until_complete(scratch.__aexit__(None, None, None))
    finally:
        loop.close()


@dataclass
class Env:
    """One backend under test. `shared`: separate instances see each other's state."""

    name: str
    shared: bool
    stack: AsyncExitStack
    factory: Callable[..., Awaitable[Any]]
    _single: Any = field(default=None)

    async def _new(self, **kwargs: Any) -> Any:
        if self.shared:
            return await self.factory(**kwargs)
        if self._single is None or kwargs:
            self._single = await self.factory(**kwargs)
        return self._single


@dataclass
class LocksEnv(Env):
    async def new(self, timing: LeaseTiming | None = None) -> TurnLocks:
        locks: TurnLocks = await self._new(**({"timing": timing} if timing else {}))
        return locks


@dataclass
class RunsEnv(Env):
    async def new(self, **kwargs: Any) -> RunLog:
        runs: RunLog = await self._new(**kwargs)
        return runs


@dataclass
class IdempotencyEnv(Env):
    async def new(self) -> IdempotencyKeys:
        keys: IdempotencyKeys = await self._new()
        return keys


def _params(*names: str) -> list[Any]:
    marks = {
        "redis": pytest.mark.redis,
        "redis-cluster": pytest.mark.redis,
        "sql-postgres": pytest.mark.postgres,
    }
    return [pytest.param(n, id=n, marks=marks.get(n, ())) for n in names]


def _backend_url(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """The URL a backend needs. Called from sync fixtures only, so session resources (the
    PostgreSQL scratch database, the Redis Cluster) are made on demand, outside any loop,
    and only when a test of that backend runs. None: plain Redis or memory."""
    if name == "sql-sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/leases.db"
    if name == "sql-postgres":
        return str(request.getfixturevalue("postgres_scratch"))
    if name == "redis-cluster":
        return cluster_test_url(request)
    return None


@pytest.fixture(params=_params("memory", "redis", "redis-cluster", "sql-sqlite", "sql-postgres"))
def locks_backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    return request.param, _backend_url(request.param, request, tmp_path)


@pytest.fixture(params=_params("redis", "redis-cluster", "sql-sqlite", "sql-postgres"))
def expiring_locks_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[str, str | None]:
    """The backends whose leases expire when not renewed (all but memory)."""
    return request.param, _backend_url(request.param, request, tmp_path)


@pytest.fixture(params=_params("memory", "redis", "redis-cluster", "sql-sqlite", "sql-postgres"))
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    return request.param, _backend_url(request.param, request, tmp_path)


async def sql_engine(stack: AsyncExitStack, url: str) -> Any:
    """The engine of another opened `SqlStore` on `url` (a second process's)."""
    store = SqlStore(url)
    await store.open()
    stack.push_async_callback(store.close)
    return store.engine


async def clear_sql_coordination(url: str) -> None:
    """Empty the coordination tables of the (session-shared) database for this test."""
    store = SqlStore(url)
    await store.open()
    async with store.engine.begin() as conn:
        for table in (run_events, run_records, coordination_instances, idempotency_keys):
            await conn.execute(sa.delete(table))
    await store.close()


@pytest_asyncio.fixture
async def locks_env(locks_backend: tuple[str, str | None]) -> AsyncIterator[LocksEnv]:
    async with _locks_env(*locks_backend) as env:
        yield env


@pytest_asyncio.fixture
async def expiring_locks_env(
    expiring_locks_backend: tuple[str, str | None],
) -> AsyncIterator[LocksEnv]:
    async with _locks_env(*expiring_locks_backend) as env:
        yield env


@asynccontextmanager
async def _locks_env(name: str, url: str | None) -> AsyncIterator[LocksEnv]:
    async with AsyncExitStack() as stack:
        if name == "memory":

            async def memory(**_: Any) -> TurnLocks:
                return MemoryTurnLocks()

            yield LocksEnv(name, False, stack, memory)
            return
        if name.startswith("redis"):
            redis_url = url or await fresh_redis(stack)

            async def redis(timing: LeaseTiming | None = None) -> TurnLocks:
                clients = redis_clients(stack, redis_url)
                locks = RedisTurnLocks(clients.command, timing, prefix=clients.prefix)
                stack.push_async_callback(locks.close)
                return locks

            yield LocksEnv(name, True, stack, redis)
            return
        assert url is not None
        sql_url = url

        async def sql(timing: LeaseTiming | None = None) -> TurnLocks:
            store = SqlStore(sql_url)  # a second store = a second process's engine
            await store.open()
            stack.push_async_callback(store.close)
            locks = SqlLeaseLocks(store.engine, timing)
            stack.push_async_callback(locks.close)
            return locks

        first = SqlStore(sql_url)
        await first.open()
        async with first.engine.begin() as conn:
            await conn.execute(sa.delete(turn_leases))
        await first.close()
        yield LocksEnv(name, True, stack, sql)


@pytest_asyncio.fixture
async def runs_env(shared_backend: tuple[str, str | None]) -> AsyncIterator[RunsEnv]:
    name, url = shared_backend
    async with AsyncExitStack() as stack:
        if name == "memory":

            async def memory(**kwargs: Any) -> RunLog:
                return MemoryRunLog(**kwargs)

            yield RunsEnv(name, False, stack, memory)
            return
        if name.startswith("sql"):
            assert url is not None
            sql_url = url
            await clear_sql_coordination(sql_url)

            async def sql(**kwargs: Any) -> RunLog:
                runs = SqlRunLog(await sql_engine(stack, sql_url), wake_s=0.5, **kwargs)
                stack.push_async_callback(runs.close)
                return runs

            yield RunsEnv(name, name == "sql-postgres", stack, sql)
            return
        redis_url = url or await fresh_redis(stack)

        async def redis(**kwargs: Any) -> RunLog:
            clients = redis_clients(stack, redis_url)
            return RedisRunLog(
                clients.command,
                prefix=clients.prefix,
                blocking_client=clients.blocking,
                block_s=0.5,
                unknown_grace_s=0.2,
                **kwargs,
            )

        yield RunsEnv(name, True, stack, redis)


@pytest_asyncio.fixture
async def idempotency_env(
    shared_backend: tuple[str, str | None],
) -> AsyncIterator[IdempotencyEnv]:
    name, url = shared_backend
    async with AsyncExitStack() as stack:
        if name == "memory":

            async def memory() -> IdempotencyKeys:
                return MemoryIdempotencyKeys()

            yield IdempotencyEnv(name, False, stack, memory)
            return
        if name.startswith("sql"):
            assert url is not None
            sql_url = url
            await clear_sql_coordination(sql_url)

            async def sql() -> IdempotencyKeys:
                return SqlIdempotencyKeys(await sql_engine(stack, sql_url))

            yield IdempotencyEnv(name, True, stack, sql)
            return
        redis_url = url or await fresh_redis(stack)

        async def redis() -> IdempotencyKeys:
            clients = redis_clients(stack, redis_url)
            return RedisIdempotencyKeys(clients.command, prefix=clients.prefix)

        yield IdempotencyEnv(name, True, stack, redis)
