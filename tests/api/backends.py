"""State URLs of every store backend, for API tests that must hold on all of them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.services import check_redis, redis_url, scratch_postgres_database, with_redis_db

BACKENDS = ["sqlite", "postgres", "redis"]
API_REDIS_DB = 10


@asynccontextmanager
async def state_url_for(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/parley.db"
    elif backend == "postgres":
        async with scratch_postgres_database() as url:
            yield url
    elif backend == "redis":
        url = with_redis_db(redis_url(), API_REDIS_DB)
        await check_redis(url)
        yield f"{url}?prefix=parley-test-{uuid.uuid4().hex[:8]}:"
    else:
        raise ValueError(backend)
