"""SQLite's single-statement driver reads (`SqlConnections._read_driver`: the turn's
conversation read, the path walk, the checkpoint list) and its driver-level write
transactions (`SqlConnections._sqlite_write`: the turn's append, checkpoints) run on
connections the store keeps (`sql_driver.KeptSqliteConnections`), not on a pool checkout
per call."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from app.domain import utcnow
from app.stores.sql import SqlStore
from tests.contract.builders import append, chain, conversation, grow


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    s = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/parley.db")
    await s.open()
    yield s
    await s.close()


def _checkouts(store: SqlStore) -> list[int]:
    seen: list[int] = []

    @event.listens_for(store.engine.sync_engine, "checkout")
    def _count(*_args: Any) -> None:
        seen.append(1)

    return seen


async def test_repeated_reads_check_nothing_out_of_the_pool(store: SqlStore) -> None:
    conv, msgs = await grow(store, await store.create_conversation(conversation()), 3)
    await store.get_conversation(conv.id, now=utcnow())  # the first one keeps a connection
    checkouts = _checkouts(store)
    for _ in range(20):
        got = await store.get_conversation(conv.id, now=utcnow())
        assert got is not None and got.head_message_id == msgs[-1].id
        path = await store.get_path(conv.lineage_id, msgs[-1].id, limit=10)
        assert [m.id for m in path] == [m.id for m in reversed(msgs)]
    assert checkouts == []


async def test_a_kept_connection_sees_every_later_commit(store: SqlStore) -> None:
    conv = await store.create_conversation(conversation())
    assert (await store.get_conversation(conv.id, now=utcnow())) is not None
    for _ in range(3):
        conv, msgs = await grow(store, conv, 1)
        got = await store.get_conversation(conv.id, now=utcnow())
        assert got is not None
        assert (got.head_message_id, got.version) == (msgs[-1].id, conv.version)


async def test_concurrent_reads_beyond_the_kept_ones_use_the_pool_and_end_kept(
    store: SqlStore,
) -> None:
    conv = await store.create_conversation(conversation())
    results = await asyncio.gather(
        *(store.get_conversation(conv.id, now=utcnow()) for _ in range(12))
    )
    assert all(r is not None and r.id == conv.id for r in results)
    pool: Any = store.engine.sync_engine.pool
    assert pool.checkedout() == 4  # the readers' keep: the others went back
    await store.close()
    assert pool.checkedout() == 0  # close gave the kept ones back


async def test_a_failed_read_gives_its_connection_back_to_the_pool(store: SqlStore) -> None:
    conv = await store.create_conversation(conversation())
    await store.get_conversation(conv.id, now=utcnow())
    pool: Any = store.engine.sync_engine.pool
    assert pool.checkedout() == 1
    with pytest.raises(sqlite3.OperationalError):
        async with store._read_driver() as driver:
            await driver.execute_fetchall("SELECT * FROM no_such_table")
    assert pool.checkedout() == 0
    assert (await store.get_conversation(conv.id, now=utcnow())) is not None


async def test_repeated_appends_check_nothing_out_of_the_pool(store: SqlStore) -> None:
    conv, msgs = await grow(store, await store.create_conversation(conversation()), 1)
    checkouts = _checkouts(store)
    for _ in range(10):
        msgs = chain(conv, msgs[-1], 2)
        conv = await append(store, conv, msgs)
    assert checkouts == []
    got = await store.get_conversation(conv.id, now=utcnow())
    assert got is not None and got.message_count == 21 == conv.message_count


async def test_a_failed_write_gives_its_connection_back_and_the_next_one_writes(
    store: SqlStore,
) -> None:
    conv, msgs = await grow(store, await store.create_conversation(conversation()), 1)
    await store.get_conversation(conv.id, now=utcnow())
    pool: Any = store.engine.sync_engine.pool
    kept = pool.checkedout()
    assert kept == 2  # a reader and the writer

    def fails(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE conversations SET version = version + 100")
        raise sqlite3.IntegrityError("boom")

    with pytest.raises(sqlite3.IntegrityError):
        async with store._sqlite_write() as writer:
            await writer.transaction(fails)
    assert pool.checkedout() == kept - 1  # back to the pool, rolled back
    got = await store.get_conversation(conv.id, now=utcnow())
    assert got is not None and got.version == conv.version
    conv = await append(store, conv, chain(conv, msgs[-1], 1))
    assert conv.message_count == 2
    assert pool.checkedout() == kept
