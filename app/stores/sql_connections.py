"""The SQL store's engine and connections: opening (engine, migrations), the read and
write connections every store call takes, and PostgreSQL's lineage locks.

`SqlConnections` is the base of `app.stores.sql.SqlStore` (conversations and messages)
through `app.stores.sql_records.SqlRecords` (the records attached to them). Writes on
SQLite queue on one asyncio.Lock in-process (and `BEGIN IMMEDIATE` plus a busy timeout
across processes, `sql_engine`), so they never fail with "database is locked" under load.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import StoreUnavailable
from app.stores.base import StateStore
from app.stores.sql_checkpoints import CheckpointsRead, checkpoints_read
from app.stores.sql_driver import (
    KeptSqliteConnections,
    SqliteWriter,
    bounded_postgres_driver,
    call_timeout_s,
    prepare_on,
    prepare_on_connect,
    sqlite_writer,
)
from app.stores.sql_engine import (
    IDLE_PING_S,
    PG_LOCK_NAMESPACE,
    WRITE_OPTION,
    DialectTraits,
    create_engine,
    parse_url,
    single_statement_reads,
    sqlite_path,
    unavailable_on_connection_errors,
    upgrade_schema,
)
from app.stores.sql_hot import ConversationRead, conversation_read
from app.stores.sql_hot_append import postgres_hot_statements
from app.stores.sql_hot_path import PathRead, path_read


class SqlConnections(StateStore):
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        idle_ping_s: float = IDLE_PING_S,
        pool_size: int = 10,
        max_overflow: int = 20,
    ) -> None:
        """`timeout_s` (`PARLEY_STORE_TIMEOUT_S`) bounds every call on PostgreSQL (pool
        wait, connect, statements: a black-holed server is a 503, not a hang). The call
        is cut `sql_driver.GRACEFUL_CLOSE_S` before 90 % of it (`call_timeout_s`),
        because SQLAlchemy then gives the abandoned connection that long to close;
        connecting alone gets half the cut.
        SQLite (a local file, where cancelling a write midway is worse than waiting)
        keeps its busy timeout. `idle_ping_s`: PostgreSQL connections idle longer than
        this are pinged before use (`app.stores.sql_engine._ping_idle_connections`).
        `pool_size`/`max_overflow` size PostgreSQL's connection pool."""
        self._url = parse_url(url)
        self._timeout_s = timeout_s
        self._idle_ping_s = idle_ping_s
        self._pool = {"pool_size": pool_size, "max_overflow": max_overflow}
        self._call_timeout_s: float | None = None  # set by open() on PostgreSQL
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._single_reader: AsyncEngine | None = None
        self._sqlite_readers: KeptSqliteConnections | None = None
        self._sqlite_writers: KeptSqliteConnections | None = None
        self._traits = DialectTraits(single_writer=False, advisory_locks=False, jsonb=False)
        self._write_lock: asyncio.Lock | None = None
        self._conversation_read: ConversationRead | None = None
        self._path_read: PathRead | None = None
        self._checkpoints_read: CheckpointsRead | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("SqlStore.open() has not been called")
        return self._engine

    def sql_engine(self) -> AsyncEngine:
        return self.engine

    def sql_write_lock(self) -> asyncio.Lock | None:
        return self._write_lock

    def connection_limit(self) -> int | None:
        """PostgreSQL: the pool's `pool_size + max_overflow`. SQLite: None (its writes
        queue on one lock, its reads need no server connection)."""
        if self._url.drivername.startswith("sqlite"):
            return None
        return self._pool["pool_size"] + self._pool["max_overflow"]

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._engine is not None:
            return
        path = sqlite_path(self._url)
        if path is not None:
            with unavailable_on_connection_errors():  # OSError: the path is unusable
                await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        call_s = call_timeout_s(self._timeout_s)
        engine = create_engine(
            self._url, connect_timeout_s=call_s / 2, idle_ping_s=self._idle_ping_s, **self._pool
        )
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._single_reader = single_statement_reads(engine)
        self._traits = DialectTraits.of(engine.dialect)
        self._conversation_read = conversation_read(engine.dialect)
        self._path_read = path_read(engine.dialect)
        self._checkpoints_read = checkpoints_read(engine.dialect)
        self._write_lock = asyncio.Lock() if self._traits.single_writer else None
        if self._traits.single_writer:
            self._sqlite_readers = KeptSqliteConnections(engine, keep=4)
            self._sqlite_writers = KeptSqliteConnections(engine, keep=1)  # one writer at a time
        try:
            async with self._write() as conn:  # migrations may take long: not bounded
                await conn.run_sync(upgrade_schema)
            if not self._traits.single_writer:
                # PostgreSQL: every connection prepares the turn's statements when it
                # opens (this one opened for the migrations, before the tables existed)
                hot = postgres_hot_statements()
                prepare_on_connect(engine, hot)
                async with engine.connect() as conn:
                    await prepare_on(conn, hot)
            self._call_timeout_s = None if self._traits.single_writer else call_s
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        engine, self._engine, self._writer = self._engine, None, None
        self._single_reader = None
        for kept in (self._sqlite_readers, self._sqlite_writers):
            if kept is not None:
                await kept.close()
        self._sqlite_readers = self._sqlite_writers = None
        if engine is not None:
            await engine.dispose()

    async def ping(self) -> None:
        if self._engine is None:
            raise StoreUnavailable("The state store is not open.")
        async with self._read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with unavailable_on_connection_errors():
            async with asyncio.timeout(self._call_timeout_s), self.engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def _read_one(self) -> AsyncIterator[AsyncConnection]:
        """For a read of exactly one statement (`single_statement_reads`)."""
        if self._single_reader is None:
            raise RuntimeError("SqlStore.open() has not been called")
        with unavailable_on_connection_errors():
            async with asyncio.timeout(self._call_timeout_s), self._single_reader.connect() as c:
                yield c

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self._writer is None:
            raise RuntimeError("SqlStore.open() has not been called")
        lock: AbstractAsyncContextManager[Any] = self._write_lock or nullcontext()
        with unavailable_on_connection_errors():
            async with asyncio.timeout(self._call_timeout_s), lock, self._writer.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _sqlite_write(self) -> AsyncIterator[SqliteWriter]:
        """SQLite: the write lock and the store's kept connection for write transactions
        on the driver itself (`sql_driver.sqlite_writer`)."""
        if self._engine is None or self._write_lock is None:
            raise RuntimeError("SqlStore.open() has not been called on SQLite")
        with unavailable_on_connection_errors():
            async with sqlite_writer(
                self._engine, self._write_lock, self._sqlite_writers
            ) as writer:
                yield writer

    @asynccontextmanager
    async def _postgres_one(self) -> AsyncIterator[Any]:
        """PostgreSQL, for exactly one statement run on asyncpg: autocommit, its connection
        checked out without SQLAlchemy's `Connection` (`sql_driver.pooled_postgres_driver`),
        bounded like every call."""
        if self._traits.single_writer:
            raise RuntimeError("SQLite writes take the write lock: use _sqlite_write()")
        async with bounded_postgres_driver(self.engine, self._call_timeout_s) as driver:
            yield driver

    @asynccontextmanager
    async def _postgres_transaction(self) -> AsyncIterator[Any]:
        """PostgreSQL: an asyncpg transaction (BEGIN .. COMMIT, rolled back when the block
        raises) on a connection checked out as `_postgres_one`'s, bounded like every call.
        Raise the caller's own errors after the block: one raised inside it discards the
        connection (`sql_driver.pooled_postgres_driver`)."""
        async with self._postgres_one() as driver, driver.transaction():
            yield driver

    @asynccontextmanager
    async def _read_driver(self) -> AsyncIterator[Any]:
        """The driver connection for a read of exactly one statement: on PostgreSQL
        `_postgres_one`, on SQLite one the store keeps for these reads
        (`sql_driver.KeptSqliteConnections`; no `BEGIN`, no pool checkout)."""
        if not self._traits.single_writer:
            async with self._postgres_one() as driver:
                yield driver
            return
        if self._sqlite_readers is None:
            raise RuntimeError("SqlStore.open() has not been called")
        with unavailable_on_connection_errors():  # a new connection: the file is unusable
            async with self._sqlite_readers.driver() as driver:
                yield driver

    async def _lock_lineages(
        self, conn: AsyncConnection, lineage_ids: Iterable[str], *, shared: bool = False
    ) -> None:
        """PostgreSQL: transaction-scoped advisory locks, taken in a fixed order."""
        if not self._traits.advisory_locks:
            return
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        for lineage_id in sorted(set(lineage_ids)):
            await conn.execute(
                sa.text(f"SELECT {fn}(:ns, hashtext(:lineage))"),
                {"ns": PG_LOCK_NAMESPACE, "lineage": lineage_id},
            )
