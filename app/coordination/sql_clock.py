"""The current time for the SQL coordination tables, and their writer engine.

On PostgreSQL "now" is the server's `clock_timestamp()`, so instances with skewed clocks
agree on every expiry; SQLite is only shared by processes of one host, which share a clock,
so the instance's own clock is used there. Writes go through the store's writer option
(`BEGIN IMMEDIATE` on SQLite, see `app.stores.sql_engine`); single-statement writes skip
the BEGIN/COMMIT round trips on PostgreSQL (`statement()`).

On SQLite every write transaction also queues on the store's write lock
(`StateStore.sql_write_lock`, given as `write_lock`): the coordinator's writes (a run's
record when it is created and when it ends, idempotency keys, the heartbeat) then wait
their turn in FIFO order behind the store's commits, instead of polling SQLite's lock in
its busy handler (sleeps of up to 100 ms while others pass; measured in
bench/streaming.py: most of a streamed turn's time before its first token).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.stores.sql_driver import (
    KeptSqliteConnections,
    SqliteWriter,
    bounded_postgres_driver,
    sqlite_writer,
)
from app.stores.sql_engine import WRITE_OPTION
from app.stores.sql_tables import UTCDateTime


class SqlClock:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        write_lock: asyncio.Lock | None = None,
        keep_writer: bool = False,
        call_timeout_s: float | None = None,
    ) -> None:
        """`keep_writer` (SQLite): `sqlite_write` keeps its connection between writes
        (`sql_driver.KeptSqliteConnections`, one: they queue on the write lock) instead of
        a pool checkout per write (~32 us of CPU); the owner then calls `close`.
        `call_timeout_s`: the bound of one PostgreSQL driver statement
        (`postgres_statement`; `sql_driver.call_timeout_s` of `PARLEY_STORE_TIMEOUT_S`)."""
        name = engine.dialect.name
        if name not in ("postgresql", "sqlite"):
            raise ValueError(f"SQL coordination needs PostgreSQL or SQLite, not {name!r}")
        self.postgres = name == "postgresql"
        self.reader = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._write_lock = write_lock
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.call_timeout_s = call_timeout_s
        self._kept = (
            KeptSqliteConnections(engine, keep=1) if keep_writer and not self.postgres else None
        )

    async def close(self) -> None:
        """Give the kept writer connection back to the pool (`keep_writer`)."""
        if self._kept is not None:
            await self._kept.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (`BEGIN IMMEDIATE` on SQLite), queued on the write lock."""
        lock: AbstractAsyncContextManager[Any] = self._write_lock or nullcontext()
        async with lock, self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def sqlite_write(self) -> AsyncIterator[SqliteWriter]:
        """SQLite: the write lock (queued on it) and a connection for write transactions
        on the driver (`sql_driver.sqlite_writer`)."""
        async with sqlite_writer(self.reader, self._write_lock, self._kept) as writer:
            yield writer

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one self-contained write statement. On PostgreSQL it runs in
        autocommit (no BEGIN/COMMIT round trips: the statement is its own transaction);
        on SQLite in a `BEGIN IMMEDIATE` transaction."""
        if self.postgres:
            async with self._autocommit.connect() as conn:
                yield conn
        else:
            async with self.write() as conn:
                yield conn

    @asynccontextmanager
    async def postgres_statement(self) -> AsyncIterator[Any]:
        """PostgreSQL: the asyncpg connection for one self-contained statement run on the
        driver, in autocommit, bounded by `call_timeout_s`
        (`sql_driver.bounded_postgres_driver`)."""
        if not self.postgres:
            raise RuntimeError("postgres_statement() is for PostgreSQL")
        async with bounded_postgres_driver(self.reader, self.call_timeout_s) as driver:
            yield driver

    def now(self) -> sa.ColumnElement[Any]:
        if self.postgres:
            return sa.func.clock_timestamp()
        return sa.literal(datetime.now(UTC), UTCDateTime())

    def later(self, seconds: float) -> sa.ColumnElement[Any]:
        delta = timedelta(seconds=seconds)
        if self.postgres:
            return sa.func.clock_timestamp() + sa.literal(delta, sa.Interval())
        return sa.literal(datetime.now(UTC) + delta, UTCDateTime())

    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT (with `on_conflict_do_update`)."""
        return postgresql.insert(table) if self.postgres else sqlite.insert(table)
