"""The Alembic revisions build exactly the tables `app.stores.sql_tables` describes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from app.stores.sql import SqlStore
from app.stores.sql_tables import metadata
from tests.services import scratch_postgres_database


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [d for d in compare_metadata(context, metadata) if not _is_alembic_table(d)]


def _is_alembic_table(diff: Any) -> bool:
    return bool(
        isinstance(diff, tuple)
        and len(diff) > 1
        and getattr(diff[1], "name", "") == "alembic_version"
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/schema.db")
        await store.open()
        yield store
        await store.close()
        return
    async with scratch_postgres_database() as url:
        store = SqlStore(url)
        await store.open()
        yield store
        await store.close()


async def test_migrations_match_the_table_definitions(migrated: SqlStore) -> None:
    async with migrated.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_opening_twice_does_not_migrate_again(migrated: SqlStore) -> None:
    again = SqlStore(migrated.engine.url.render_as_string(hide_password=False))
    await again.open()
    await again.close()
    async with migrated.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


@pytest.mark.postgres
async def test_concurrent_first_opens_migrate_once() -> None:
    """Several instances starting together against an empty database (advisory lock)."""
    import asyncio

    async with scratch_postgres_database() as url:
        stores = [SqlStore(url) for _ in range(4)]
        await asyncio.gather(*(s.open() for s in stores))
        for s in stores:
            await s.ping()
            await s.close()
