"""State URLs of every store backend, for API tests that must hold on all of them.

Redis: the server and db of `PARLEY_TEST_REDIS_URL`, under a key prefix of this test
alone, whose keys are deleted afterwards (nothing else in that db is touched).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

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
