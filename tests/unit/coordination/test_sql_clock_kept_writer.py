"""SqlClock(keep_writer=True) on SQLite: the coordinator's driver-level write transactions
(a run's record when created and when it ends, `SqlRunLog`'s write batch) keep their
connection between writes instead of a pool checkout per write; `close` gives it back."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from app.coordination.sql_clock import SqlClock
from app.stores.sql import SqlStore


def _write(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    return conn.execute("INSERT INTO t (n) VALUES (1)").rowcount


@pytest.mark.parametrize("keep", [True, False])
async def test_kept_writer_checks_out_once_and_close_returns_it(tmp_path: Path, keep: bool) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/parley.db")
    await store.open()
    try:
        clock = SqlClock(store.engine, write_lock=asyncio.Lock(), keep_writer=keep)
        seen: list[int] = []

        @event.listens_for(store.engine.sync_engine, "checkout")
        def _count(*_args: Any) -> None:
            seen.append(1)

        for _ in range(5):
            async with clock.sqlite_write() as writer:
                assert await writer.transaction(_write) == 1
        pool: Any = store.engine.sync_engine.pool
        assert (len(seen), pool.checkedout()) == ((1, 1) if keep else (5, 0))

        def fails(conn: sqlite3.Connection) -> None:
            _write(conn)
            raise sqlite3.IntegrityError("boom")

        with pytest.raises(sqlite3.IntegrityError):
            async with clock.sqlite_write() as writer:
                await writer.transaction(fails)
        assert pool.checkedout() == 0  # a failed write gives its connection back
        async with clock.sqlite_write() as writer:
            await writer.transaction(_write)
        await clock.close()
        assert pool.checkedout() == 0
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 6
    finally:
        await store.close()
