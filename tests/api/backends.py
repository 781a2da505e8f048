"""State URLs of every store backend, for API tests that must hold on all of them.

Redis: the server and db of `PARLEY_TEST_REDIS_URL`, under a key prefix of this test
alone, whose keys are deleted afterwards (nothing else in that db is touched).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from app.settings import Settings
from tests.conftest import running_app
from tests.contract.cluster import delete_prefixed
from tests.services import check_redis, redis_url, scratch_postgres_database

BACKENDS = ["sqlite", "postgres", "redis"]
ALL_BACKENDS = ["memory", *BACKENDS]  # "memory" too: the embedded default


@asynccontextmanager
async def state_url_for(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/parley.db"
    elif backend == "postgres":
        async with scratch_postgres_database() as url:
            yield url
    elif backend == "redis":
        url = redis_url()
        await check_redis(url)
        prefix = f"parley-test-api-{uuid.uuid4().hex[:12]}:"
        try:
            yield f"{url}{'&' if '?' in url else '?'}prefix={prefix}"
        finally:
            await delete_prefixed(url, prefix)
    else:
        raise ValueError(backend)


@asynccontextmanager
async def app_on(
    backend: str, tmp_path: Path, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """`tests.conftest.running_app` on `backend`'s state URL (the other settings as given)."""
    async with (
        state_url_for(backend, tmp_path) as url,
        running_app(settings.model_copy(update={"state_url": url})) as client,
    ):
        yield client
