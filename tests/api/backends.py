"""State URLs of every store backend, for API tests that must hold on all of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.services import scratch_postgres_database

BACKENDS = ["sqlite", "postgres"]


@asynccontextmanager
async def state_url_for(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/parley.db"
    elif backend == "postgres":
        async with scratch_postgres_database() as url:
            yield url
    else:
        raise ValueError(backend)
