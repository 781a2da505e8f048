"""SQL lease-lock stamps beyond the shared contract (`app.coordination.sql_locks`): a
release keeps the row and its counter; a lease taken by code that does not count (an
older version during a rolling deploy) and never released still breaks the stamp; a row
deleted by hand restarts its counter above every stamp given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from app.coordination.sql_clock import SqlClock
from app.coordination.sql_locks import SqlLeaseLocks
from app.coordination.sql_run_sweep import sweep_runs
from app.stores.sql_tables import turn_leases
from tests.contract.coordination.conftest import sql_engine


@pytest.fixture(params=["sql-sqlite", pytest.param("sql-postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sql-sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/leases.db"
    return str(request.getfixturevalue("postgres_scratch"))


@pytest_asyncio.fixture
async def engine(sql_url: str) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        engine = await sql_engine(stack, sql_url)
        async with engine.begin() as conn:
            await conn.execute(sa.delete(turn_leases))
        yield engine


async def _row(engine: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(turn_leases))).one()


async def test_a_release_frees_the_row_in_place_and_keeps_its_counter(engine: Any) -> None:
    locks = SqlLeaseLocks(engine)
    try:
        lease = await locks.acquire("c", "run-1", wait_s=0)
        await lease.release()
        row = await _row(engine)
        assert row.token == "" and row.seq == locks.stamp("c")
        assert await locks.holder("c") is None
        lease = await locks.acquire("c", "run-2", wait_s=0)
        assert lease.stamp_before == row.seq and (await _row(engine)).seq == row.seq + 1
        await lease.release()
    finally:
        await locks.close()


async def test_an_unreleased_lease_of_code_that_does_not_count_breaks_the_stamp(
    engine: Any,
) -> None:
    locks = SqlLeaseLocks(engine)
    try:
        await (await locks.acquire("c", "run-1", wait_s=0)).release()
        seen = locks.stamp("c")
        async with engine.begin() as conn:  # an older version takes the lock, then dies
            soon = datetime.now(UTC) + timedelta(seconds=0.2)
            await conn.execute(
                sa.update(turn_leases).values(run_id="old", token="f" * 32, expires_at=soon)
            )
        await asyncio.sleep(0.3)
        lease = await locks.acquire("c", "run-2", wait_s=0)  # takes the expired row over
        assert seen is not None and lease.stamp_before != seen
        await lease.release()
    finally:
        await locks.close()


async def test_a_deleted_row_restarts_its_counter_above_every_stamp(engine: Any) -> None:
    locks = SqlLeaseLocks(engine)
    try:
        await (await locks.acquire("c", "run-1", wait_s=0)).release()
        seen = locks.stamp("c")
        assert seen is not None and seen > 1_700_000_000 * 10**6, "from the clock in µs"
        async with engine.begin() as conn:
            await conn.execute(sa.delete(turn_leases))
        lease = await locks.acquire("c", "run-2", wait_s=0)
        assert lease.stamp_before is not None and lease.stamp_before > seen
        await lease.release()
    finally:
        await locks.close()


async def test_the_sweep_deletes_free_lock_rows_and_keeps_held_ones(engine: Any) -> None:
    """One row per conversation ever locked stayed forever; free ones are swept now."""
    locks = SqlLeaseLocks(engine)
    try:
        freed = await locks.acquire("freed", "run-1", wait_s=0)
        await freed.release()
        held = await locks.acquire("held", "run-2", wait_s=0)
        await sweep_runs(SqlClock(engine))
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(turn_leases.c.conversation_id))).scalars()
            assert list(rows) == ["held"]
        again = await locks.acquire("freed", "run-3", wait_s=0)  # a new row, working
        await again.release()
        await held.release()
    finally:
        await locks.close()
