"""PostgreSQL: a run's creation and its first try at the turn lock are one statement
(`SqlRunLog.create_and_publish_locking`, `sql_run_create.creating_with` the lease
backend's acquisition): one round trip per turn instead of two. The rules of
`test_coordination_create_locking` (every backend) hold; here, what is PostgreSQL's own:
the one statement, what it wrote, and a creation cut short after its statement ran (its
caller cancelled, or its reply lost) leaving the lock free."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from app.coordination.factory import SqlCoordinator
from app.coordination.lease_locks import LeaseLocks
from app.coordination.sql_runs import SqlRunLog
from app.errors import StoreUnavailable
from app.stores.sql import SqlStore
from tests.contract.coordination.conftest import clear_sql_coordination
from tests.contract.coordination.test_coordination_create_locking import (
    _create,
    assert_cut_short_creation_frees_the_lock,
)
from tests.contract.coordination.test_coordination_end_releasing import (
    _count_commands,
    _patched,
    _unpatch,  # noqa: F401  (autouse: the statement counter removed after each test)
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("postgres_scratch"))


@pytest_asyncio.fixture
async def coordinator(pg_url: str) -> AsyncIterator[SqlCoordinator]:
    await clear_sql_coordination(pg_url)
    store = SqlStore(pg_url)
    await store.open()
    coord = SqlCoordinator(store.engine, event_retention_s=60)
    try:
        yield coord
    finally:
        await coord.close()
        await store.close()


def _stop_counting() -> None:
    while _patched:
        name, original = _patched.pop()
        setattr(asyncpg.Connection, name, original)


def _run_log(coord: SqlCoordinator) -> SqlRunLog:
    runs: Any = coord.runs
    runs = getattr(runs, "_inner", runs)
    assert isinstance(runs, SqlRunLog)
    return runs


async def test_the_creation_and_the_lock_are_one_statement(coordinator: SqlCoordinator) -> None:
    locks = coordinator.locks
    assert isinstance(locks, LeaseLocks)
    first = await _create(coordinator, "run-0", "conv-1")  # (a connection warmed up)
    assert first is not None
    await first.release()
    stamp = locks.stamp("conv-1")
    sent = _count_commands(coordinator)
    lease = await _create(coordinator, "run-1", "conv-1")
    assert sent == ["WITH"], sent  # was: the creation, then the executor's acquisition
    _stop_counting()
    assert lease is not None and lease.run_id == "run-1"
    assert stamp is not None and lease.stamp_before == stamp  # nobody came in between
    assert await locks.holder("conv-1") == "run-1"
    other = SqlRunLog(coordinator._engine)  # another instance reads what it wrote
    saved = await other.get("run-1")
    assert saved is not None and saved.run.conversation_id == "conv-1"
    await lease.release()
    assert await locks.holder("conv-1") is None
    await other.close()


def _slow_create(coordinator: SqlCoordinator, outcome: str) -> asyncio.Event:
    """The creation's statement runs, then its caller waits (`outcome` "cancel") or its
    reply is lost ("lost": the step fails after the statement ran)."""
    writer: Any = _run_log(coordinator)._writer
    real = writer.create
    ran = asyncio.Event()

    async def create(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        ran.set()
        if outcome == "lost":
            raise StoreUnavailable("the reply was lost (simulated)")
        await asyncio.sleep(0.05)
        return result

    writer.create = create
    return ran


@pytest.mark.parametrize("outcome", ["cancel", "lost"])
async def test_a_creation_cut_short_leaves_the_lock_free(
    coordinator: SqlCoordinator, outcome: str
) -> None:
    await assert_cut_short_creation_frees_the_lock(
        coordinator, _slow_create(coordinator, outcome), outcome
    )
