"""Where the real services of the test suite are, and what to do when one is missing.

Tests talk to real PostgreSQL and Redis, located by `PARLEY_TEST_DATABASE_URL` and
`PARLEY_TEST_REDIS_URL` (the Makefile points them at this machine's servers). When one is
not configured or not reachable, the test is skipped with a loud reason, except under
`CI=true`, where a missing service is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_ENV = "PARLEY_TEST_DATABASE_URL"
REDIS_ENV = "PARLEY_TEST_REDIS_URL"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(reason: str) -> None:
    """Skip (locally) or fail (CI) the current test because a service is missing."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(f"SERVICE MISSING - {reason}")


def postgres_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        service_missing(f"{PG_ENV} is not set (e.g. postgresql+asyncpg://postgres@127.0.0.1/test)")
        raise AssertionError("unreachable")
    return url


def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        service_missing(f"{REDIS_ENV} is not set (e.g. redis://127.0.0.1:6379/13)")
        raise AssertionError("unreachable")
    return url


def with_redis_db(url: str, db: int) -> str:
    """The same Redis server, another logical database (suites keep out of each other's way)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def _asyncpg_dsn(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


@asynccontextmanager
async def scratch_postgres_database(base_url: str | None = None) -> AsyncIterator[str]:
    """Create an empty database next to the configured one, yield its SQLAlchemy URL, drop it.

    Each caller gets its own database, so migrations run exactly as in production and
    nothing leaks into the `test` database.
    """
    import asyncpg

    url = base_url or postgres_url()
    name = f"parley_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing(f"PostgreSQL at {url} is not reachable: {exc!r}")
        raise
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(url)
    scratch = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        yield scratch
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def check_redis(url: str) -> None:
    """Skip/fail the test if Redis at `url` does not answer PING."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        service_missing(f"Redis at {url} is not reachable: {exc!r}")
    finally:
        await client.aclose()
