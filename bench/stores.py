"""The state stores a benchmark can run Parley on: scratch databases on the machine's real
services and the registry `STORES` (`sqlite`, `postgres`, `redis`). A store whose
provisioning or `create_store(url)` + `open()` raises is skipped with the reason."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Where the real services are (the machine's defaults; override through the environment).
PG_ADMIN_URL = os.environ.get(
    "PARLEY_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PARLEY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+asyncpg://...`) as a plain libpq one (`postgresql://`)."""
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql"))


@asynccontextmanager
async def scratch_postgres(
    prefix: str = "parley_bench", admin_url: str = PG_ADMIN_URL
) -> AsyncIterator[str]:
    """Create an empty database next to `admin_url`'s, yield its URL (same scheme), and
    drop it afterwards (WITH (FORCE): connections left open do not keep it alive)."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(libpq_url(admin_url), timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(libpq_url(admin_url), timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def _sqlite(workdir: Path) -> AsyncIterator[str]:
    yield f"sqlite+aiosqlite:///{workdir / 'parley-bench.db'}"


@asynccontextmanager
async def _postgres(_: Path) -> AsyncIterator[str]:
    async with scratch_postgres() as url:
        yield url


@asynccontextmanager
async def _redis(_: Path) -> AsyncIterator[str]:
    from redis.asyncio import Redis

    async def flush() -> None:
        client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            await client.flushdb()
        finally:
            await client.aclose()

    await flush()
    try:
        yield REDIS_URL
    finally:
        await flush()


@dataclass(frozen=True)
class StoreBackend:
    name: str
    description: str
    provision: Callable[[Path], AbstractAsyncContextManager[str]]


STORES: dict[str, StoreBackend] = {
    b.name: b
    for b in (
        StoreBackend("sqlite", "SQLite file in a temporary directory (aiosqlite)", _sqlite),
        StoreBackend("postgres", "scratch PostgreSQL database (asyncpg)", _postgres),
        StoreBackend("redis", f"Redis {REDIS_URL} (flushed before and after)", _redis),
    )
}


class StoreSkipped(Exception):
    """A store could not be provisioned or opened; the benchmark skips it."""


@asynccontextmanager
async def provisioned_store(backend: StoreBackend, workdir: Path) -> AsyncIterator[str]:
    """Yield a state URL for `backend` that `create_store(url)` accepts and opens (schema
    created), or raise `StoreSkipped` with the reason."""
    from app.stores.factory import create_store

    async with AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(backend.provision(workdir))
            store = create_store(url)
            await store.open()
            await store.close()
        except Exception as exc:
            raise StoreSkipped(f"{type(exc).__name__}: {exc}") from exc
        yield url
