"""The drivers under SQLAlchemy's pool (`app.stores.sql_driver`).

SQLite write transactions on aiosqlite in one hand-off to its thread (`SqliteWriter`):
what is committed, what is rolled back, what a cancelled caller leaves, and that it is
one hand-off (aiosqlite's `Connection._execute`, the private queue it relies on, is pinned
here: an aiosqlite upgrade that changes it fails these tests, not a turn). PostgreSQL's
`pooled_postgres_driver`: autocommit, and which failures invalidate the connection."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.errors import StoreUnavailable
from app.stores.sql_driver import pooled_postgres_driver, sqlite_in_thread, sqlite_writer
from tests.services import scratch_postgres_database


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with eng.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY)")
    yield eng
    await eng.dispose()


async def rows(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [r[0] for r in (await conn.exec_driver_sql("SELECT k FROM t ORDER BY k")).all()]


def insert(*keys: str) -> Any:
    def work(conn: sqlite3.Connection) -> int:
        for k in keys:
            conn.execute("INSERT INTO t (k) VALUES (?)", (k,))
        return len(keys)

    return work


async def test_a_transaction_commits_what_its_work_wrote(engine: AsyncEngine) -> None:
    async with sqlite_writer(engine, asyncio.Lock()) as writer:
        assert await writer.transaction(insert("a", "b")) == 2
    assert await rows(engine) == ["a", "b"]


async def test_work_that_raises_is_rolled_back_and_its_error_raised(engine: AsyncEngine) -> None:
    async with sqlite_writer(engine, asyncio.Lock()) as writer:
        with pytest.raises(sqlite3.IntegrityError):
            await writer.transaction(insert("a", "a"))  # the second violates the key
        await writer.transaction(insert("c"))  # the connection is usable after
    assert await rows(engine) == ["c"]


async def test_operational_errors_are_store_unavailable(engine: AsyncEngine) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO missing_table VALUES (1)")

    async with sqlite_writer(engine, asyncio.Lock()) as writer:
        with pytest.raises(StoreUnavailable):
            await writer.transaction(broken)


async def test_a_transaction_is_one_hand_off_to_the_driver_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    original = aiosqlite.Connection._execute

    async def counting(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await original(self, fn, *args, **kwargs)

    async with sqlite_writer(engine, asyncio.Lock()) as writer:
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
        thread: list[threading.Thread] = []

        def work(conn: sqlite3.Connection) -> None:
            thread.append(threading.current_thread())
            insert("a", "b", "c")(conn)

        await writer.transaction(work)
        monkeypatch.undo()
    assert len(calls) == 1  # BEGIN IMMEDIATE, three INSERTs and COMMIT
    assert thread and thread[0] is not threading.current_thread()
    assert await rows(engine) == ["a", "b", "c"]


async def test_a_cancelled_caller_holds_the_write_lock_until_the_transaction_ended(
    engine: AsyncEngine,
) -> None:
    lock = asyncio.Lock()
    started = threading.Event()
    proceed = threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (k) VALUES ('slow')")
        started.set()
        proceed.wait(5)

    async def write() -> None:
        async with sqlite_writer(engine, lock) as writer:
            await writer.transaction(slow)

    task = asyncio.create_task(write())
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)
    assert lock.locked()  # still in the thread: the next writer queues on the lock
    proceed.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not lock.locked()
    assert await rows(engine) == ["slow"]  # it ran to its end: committed


async def test_sqlite_in_thread_runs_on_the_connection_of_the_driver(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert await sqlite_in_thread(driver, lambda c: c.execute("SELECT 41 + 1").fetchone()) == (
            42,
        )


# --- pooled_postgres_driver: asyncpg out of the pool, without SQLAlchemy's Connection ---


@pytest.mark.postgres
async def test_pooled_postgres_driver_runs_in_autocommit_and_returns_the_connection() -> None:
    async with scratch_postgres_database() as url:
        eng = create_async_engine(url, pool_size=1, max_overflow=0)
        try:
            async with pooled_postgres_driver(eng) as driver:
                await driver.execute("CREATE TABLE t (k text PRIMARY KEY)")
                await driver.execute("INSERT INTO t VALUES ('a')")
                assert not driver.is_in_transaction()
                first = driver
            async with pooled_postgres_driver(eng) as driver:  # the one pooled connection
                assert driver is first
                assert await driver.fetchval("SELECT count(*) FROM t") == 1
        finally:
            await eng.dispose()


@pytest.mark.postgres
async def test_pooled_postgres_driver_errors_invalidate_all_but_constraint_violations() -> None:
    async with scratch_postgres_database() as url:
        eng = create_async_engine(url, pool_size=1, max_overflow=0)
        try:
            async with pooled_postgres_driver(eng) as driver:
                await driver.execute("CREATE TABLE t (k text PRIMARY KEY)")
                await driver.execute("INSERT INTO t VALUES ('a')")
                kept = driver
            with pytest.raises(asyncpg.UniqueViolationError):  # the statement's own outcome
                async with pooled_postgres_driver(eng) as driver:
                    await driver.execute("INSERT INTO t VALUES ('a')")
            async with pooled_postgres_driver(eng) as driver:
                assert driver is kept  # a healthy connection stays pooled
            with pytest.raises(StoreUnavailable):  # a server error
                async with pooled_postgres_driver(eng) as driver:
                    await driver.execute("SELECT * FROM missing_table")
            async with pooled_postgres_driver(eng) as driver:
                assert driver is not kept  # invalidated: a new connection
                assert await driver.fetchval("SELECT count(*) FROM t") == 1
                kept = driver
            with pytest.raises(asyncio.CancelledError):  # cancelled midway
                async with pooled_postgres_driver(eng) as driver:
                    task = asyncio.create_task(driver.execute("SELECT pg_sleep(5)"))
                    await asyncio.sleep(0.1)
                    task.cancel()
                    await task
            async with pooled_postgres_driver(eng) as driver:
                assert driver is not kept
                assert await driver.fetchval("SELECT 1") == 1
        finally:
            await eng.dispose()
