"""On SQLite the SQL coordinator's write transactions queue on the store's write lock
(`StateStore.sql_write_lock`), so they wait their turn behind the store's commits instead
of polling SQLite's lock in its busy handler (`app.coordination.sql_clock`), and the run
records written meanwhile share a transaction (`app.coordination.sql_write_batch`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from app.coordination.base import Coordinator, IdempotencyRecord, RunRecord
from app.coordination.factory import build_coordinator
from app.domain import Run, RunStatus
from app.settings import Settings
from app.stores import sql_driver
from app.stores.sql import SqlStore
from app.stores.sql_tables import run_records

HELD_S = 0.3


@pytest_asyncio.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[tuple[SqlStore, Coordinator]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'parley.db'}"
    store = SqlStore(url)
    await store.open()
    coordinator = build_coordinator(Settings(state_url=url), store)
    try:
        yield store, coordinator
    finally:
        await coordinator.close()
        await store.close()


def new_record(run_id: str) -> RunRecord:
    run = Run(id=run_id, conversation_id="conv-1", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    return RunRecord(run=run, lineage_id="lin-1")


async def _waits_for_the_lock(lock: asyncio.Lock, write: asyncio.Task[object]) -> None:
    """`write` does not finish while `lock` is held, and finishes once it is released."""
    await asyncio.sleep(HELD_S)
    assert not write.done(), "the coordinator wrote while the store held its write lock"
    lock.release()
    await asyncio.wait_for(write, timeout=5)


async def test_sqlite_store_exposes_its_single_writer_lock(
    sqlite: tuple[SqlStore, Coordinator],
) -> None:
    store, _ = sqlite
    assert isinstance(store.sql_write_lock(), asyncio.Lock)


async def test_run_records_are_written_behind_the_stores_write_lock(
    sqlite: tuple[SqlStore, Coordinator],
) -> None:
    store, coordinator = sqlite
    lock = store.sql_write_lock()
    assert lock is not None
    await coordinator.runs.get("warm-up")  # the heartbeat's first write, before the test
    await lock.acquire()
    create = asyncio.create_task(coordinator.runs.create(new_record("run-1")))
    await _waits_for_the_lock(lock, create)  # type: ignore[arg-type]
    ended = new_record("run-1")
    ended = ended.model_copy(
        update={"run": ended.run.model_copy(update={"status": RunStatus.completed})}
    )
    await lock.acquire()
    # the end is written behind (`EndsBehind.write`), with the next write: the next
    # run's creation, which waits for the lock
    try:
        await asyncio.wait_for(coordinator.runs.save(ended), timeout=HELD_S)
    except TimeoutError:
        lock.release()  # (so that the teardown's writes are not stuck behind it)
        raise
    create = asyncio.create_task(coordinator.runs.create(new_record("run-2")))
    await _waits_for_the_lock(lock, create)  # type: ignore[arg-type]
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(run_records.c.terminal, run_records.c.record))).first()
    assert row is not None and row.terminal
    assert RunRecord.model_validate(row.record).run.status == RunStatus.completed


async def test_idempotency_keys_are_written_behind_the_stores_write_lock(
    sqlite: tuple[SqlStore, Coordinator],
) -> None:
    store, coordinator = sqlite
    lock = store.sql_write_lock()
    assert lock is not None
    record = IdempotencyRecord(fingerprint="fp", ref="run-1")
    await lock.acquire()
    reserve = asyncio.create_task(coordinator.idempotency.reserve("s", "k", record, ttl_s=60))
    await _waits_for_the_lock(lock, reserve)  # type: ignore[arg-type]
    assert reserve.result() is None  # reserved: the key was free


async def test_concurrent_run_records_share_write_transactions(
    sqlite: tuple[SqlStore, Coordinator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit (`app.coordination.sql_write_batch`): 20 runs created at once while
    the store holds its write lock are written in one transaction once it is free, and
    each is there, as if written alone."""
    store, coordinator = sqlite
    lock = store.sql_write_lock()
    assert lock is not None
    await coordinator.runs.create(new_record("warm-up"))  # first heartbeat and sweep
    begins: list[object] = []
    transaction = sql_driver._in_transaction

    def counted(work: Any, conn: sqlite3.Connection) -> Any:
        begins.append(work)  # a write transaction (BEGIN IMMEDIATE), on the driver
        return transaction(work, conn)

    monkeypatch.setattr(sql_driver, "_in_transaction", counted)
    await lock.acquire()
    creates = [
        asyncio.create_task(coordinator.runs.create(new_record(f"run-{i}"))) for i in range(20)
    ]
    await asyncio.sleep(0.05)
    lock.release()
    await asyncio.wait_for(asyncio.gather(*creates), timeout=10)
    monkeypatch.undo()
    assert len(begins) == 1
    for i in range(20):
        assert await coordinator.runs.get(f"run-{i}") is not None


async def test_a_failing_write_in_a_batch_fails_alone(
    sqlite: tuple[SqlStore, Coordinator],
) -> None:
    """A batch that fails is written again one statement per transaction: the run created
    twice gets its error, the others are created."""
    store, coordinator = sqlite
    lock = store.sql_write_lock()
    assert lock is not None
    await coordinator.runs.create(new_record("dup"))
    await lock.acquire()
    creates = [
        asyncio.create_task(coordinator.runs.create(new_record(run_id)))
        for run_id in ("a", "dup", "b")
    ]
    await asyncio.sleep(0.05)
    lock.release()
    results = await asyncio.wait_for(asyncio.gather(*creates, return_exceptions=True), timeout=10)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], sqlite3.IntegrityError)  # (the records run on the driver)
    for run_id in ("a", "b"):
        assert await coordinator.runs.get(run_id) is not None
