"""The database driver under SQLAlchemy's pool (aiosqlite / asyncpg), for the statements
every turn runs: the plumbing shared by the store's hot path (`sql_hot`,
`sql_hot_append`) and the SQL coordinator's run records (`app.coordination.sql_run_rows`).

Through SQLAlchemy Core a statement costs a compiled-cache lookup, an execution context,
the type processors of its parameters and rows and, on aiosqlite, the adapted cursor's
three or four hand-offs to the driver's thread (cursor, execute, [fetch,] close). The hot
statements are written once per dialect as SQL text and run on the driver connection with
driver-ready values (on SQLite a whole write transaction in one hand-off, `SqliteWriter`):
this module encodes them (datetimes as SQLite stores a `UTCDateTime`, JSON as text) and
translates the driver's errors. The connection still
comes from SQLAlchemy's pool, so pool sizing, idle pings, call timeouts and the SQLite
write lock are unchanged. On PostgreSQL a new connection prepares these statements when
it opens (`prepare_on_connect`), not during its first turn.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import await_, greenlet_spawn

from app.errors import StoreUnavailable
from app.stores.sql_engine import unavailable_on_connection_errors

log = logging.getLogger("parley.stores.sql")

T = TypeVar("T")


async def driver_of(conn: AsyncConnection) -> Any:
    """The aiosqlite / asyncpg connection under `conn` (checked out of the pool)."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:  # a connection SQLAlchemy has already detached
        raise StoreUnavailable("The state store connection was closed.")
    return driver


def sqlite_text(value: datetime) -> str:
    """`value` as SQLite stores a `UTCDateTime`: naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`
    (SQLAlchemy's format; text order is time order, so `>` on the column is correct)."""
    v = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def sqlite_optional_text(value: datetime | None) -> str | None:
    return None if value is None else sqlite_text(value)


def sqlite_datetime(text: str) -> datetime:
    """A stored `UTCDateTime` read back (`sqlite_text`'s inverse)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@contextmanager
def sqlite_errors() -> Iterator[None]:
    """SQLite busy past its timeout, a disk I/O error, an unusable file: 503. Constraint
    violations (`sqlite3.IntegrityError`) are left to the caller."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"The state store is unavailable: {exc}") from exc


@asynccontextmanager
async def postgres_driver(conn: AsyncConnection) -> AsyncIterator[Any]:
    """The asyncpg connection under `conn`, for statements run on it directly.

    As SQLAlchemy does, a connection whose call failed midway (cancelled, timed out, lost,
    a server error such as a shutdown) is invalidated, not returned to the pool; its
    server errors are `StoreUnavailable`. A constraint violation is the statement's own
    outcome on a healthy connection: it is raised as asyncpg's error, for the caller."""
    driver = await driver_of(conn)
    try:
        yield driver
    except asyncpg.IntegrityConstraintViolationError:
        raise
    except asyncpg.PostgresError as exc:
        await conn.invalidate()
        raise StoreUnavailable(f"The state store is unavailable: {exc}") from exc
    except BaseException:
        await conn.invalidate()
        raise


@asynccontextmanager
async def pooled_postgres_driver(engine: AsyncEngine) -> AsyncIterator[Any]:
    """An asyncpg connection checked out of `engine`'s pool without SQLAlchemy's
    `Connection` around it, for statements run on the driver in autocommit (asyncpg runs a
    statement outside a transaction on its own). The checkout through `engine.connect()`
    also built a Connection, its execution options and events: ~120 us of CPU against
    ~40 us for the pool alone (measured, 2,000 checkouts), and a PostgreSQL turn checks
    out ~6 times. Pool events (the idle ping) and sizing are the same. As in
    `postgres_driver`, a call failing midway invalidates the connection instead of
    returning it to the pool, a server error is `StoreUnavailable` and a constraint
    violation is raised as asyncpg's error."""
    pooled = await engine.raw_connection()
    try:
        driver = pooled.driver_connection
        if driver is None:
            raise StoreUnavailable("The state store connection was closed.")
        try:
            yield driver
        except asyncpg.IntegrityConstraintViolationError:
            raise
        except asyncpg.PostgresError as exc:
            await greenlet_spawn(pooled.invalidate)
            raise StoreUnavailable(f"The state store is unavailable: {exc}") from exc
        except BaseException:
            await greenlet_spawn(pooled.invalidate)
            raise
    finally:
        await greenlet_spawn(pooled.close)


# SQLAlchemy closes an invalidated asyncpg connection "gracefully" for up to 2 s
# (`close(timeout=2)` in its asyncpg adapter) before terminating it.
GRACEFUL_CLOSE_S = 2.0


@asynccontextmanager
async def bounded_postgres_driver(
    engine: AsyncEngine, timeout_s: float | None
) -> AsyncIterator[Any]:
    """`pooled_postgres_driver`, checkout and statements bounded by `timeout_s` (the
    store's and the coordination's one copy of it: `SqlConnections._postgres_one`,
    `SqlClock.postgres_statement`, `SqlLeaseBackend._one_driver`): a link that stalls
    (packets silently dropped) is `StoreUnavailable` within the bound, not a hang. A
    statement given up on may still run on the server later (its bytes were sent):
    callers whose statement takes a lock undo it token-checked (`LeaseLocks`)."""
    with unavailable_on_connection_errors():
        async with asyncio.timeout(timeout_s), pooled_postgres_driver(engine) as driver:
            yield driver


def call_timeout_s(store_timeout_s: float) -> float:
    """The bound of one PostgreSQL call (checkout + statement) for `PARLEY_STORE_TIMEOUT_S`:
    under it with room for a graceful close, so the request still answers in time."""
    return max(store_timeout_s * 0.9 - GRACEFUL_CLOSE_S, store_timeout_s * 0.45)


def postgres_rowcount(status: str) -> int:
    """The row count of an asyncpg command status (`UPDATE 1`, `INSERT 0 1`)."""
    return int(status.rsplit(" ", 1)[-1])


# PostgreSQL: a select-list item that makes the commit of the statement's own transaction
# asynchronous (`SET LOCAL synchronous_commit = off` for it alone: in autocommit a
# statement is its transaction, and `set_config(..., true)` runs before its COMMIT). The
# commit returns without waiting for its WAL flush (an fdatasync: 0.2-0.5 ms on this
# machine, measured; the turn's answer waited for each); the rows are visible to every
# session at once, as after any commit. Only a server crash (not a shutdown) within
# `wal_writer_delay` x 3 (0.6 s by default) can lose such a commit, and any later
# synchronous commit flushes it first (WAL is written in order). Used only where that loss
# costs nothing a synchronous commit protects: the coordination writes of a run before its
# turn commits (`app.coordination.sql_event_writer`: a run's creation, its events before
# the terminal one). A run's end, its idempotency and the store's own writes stay
# synchronous.
ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"


@dataclass(frozen=True)
class WarmStatement:
    """A statement run on the driver, to prepare on each new connection."""

    sql: str


async def prepare_statements(driver: Any, statements: Sequence[WarmStatement]) -> None:
    """Prepare `statements` on the asyncpg connection `driver` without running them.

    Each goes into asyncpg's statement cache (keyed by the SQL text) as `execute` puts it
    there before it binds its first arguments, through the same call
    (`Connection._get_statement`: asyncpg's public `prepare()` does not fill that cache),
    so the first turn on this connection pays neither the prepares (a round trip each)
    nor the type introspection of a type's first use on the connection. Nothing is
    executed: a Parse and a read-only introspection query take no transaction id (the
    statements used to be run in a transaction that was rolled back, which took one per
    new connection; review F8). A server error (a table missing: an older schema) is
    logged, not raised: the warm-up only saves time."""
    try:
        for statement in statements:
            await driver._get_statement(statement.sql, None)
    except (asyncpg.PostgresError, AttributeError) as exc:
        # AttributeError: an asyncpg without `_get_statement` (its private API) must not
        # fail the connection; `tests/unit/stores/test_sql_prepare.py` says it changed
        log.warning("could not prepare the hot statements on a connection: %r", exc)


def prepare_on_connect(engine: AsyncEngine, statements: Sequence[WarmStatement]) -> None:
    """PostgreSQL: `prepare_statements` on every connection `engine` opens from now on
    (those already pooled: `prepare_on`)."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _prepare(dbapi_connection: Any, _record: Any) -> None:
        await_(prepare_statements(dbapi_connection.driver_connection, statements))


async def prepare_on(conn: AsyncConnection, statements: Sequence[WarmStatement]) -> None:
    """PostgreSQL: `prepare_statements` on this checked-out connection."""
    if conn.dialect.name == "postgresql":
        await prepare_statements(await driver_of(conn), statements)


async def sqlite_in_thread(driver: Any, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work(connection)` on the sqlite3 connection under the aiosqlite connection
    `driver`, in aiosqlite's thread, as ONE hand-off to it. Each aiosqlite call is a hand-off
    (queue, thread wake-up, the loop woken back: ~40 us of CPU on this machine, measured),
    and a write transaction through its public calls is at least three (`BEGIN`, the
    statement, `COMMIT`). This goes through `Connection._execute`, the queue every public
    method of aiosqlite is built on (pinned by `tests/unit/stores/test_sql_driver.py`).
    `work` runs on another thread: it must only use the connection and its arguments.
    Once queued it runs to its end, whatever happens to the awaiting task."""
    return await driver._execute(work, driver._conn)  # type: ignore[no-any-return]


def _in_transaction(work: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    """In aiosqlite's thread: `BEGIN IMMEDIATE`, `work`, `COMMIT`; `ROLLBACK` if `work`
    raised (its error is the one raised)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        with suppress(sqlite3.Error):
            conn.rollback()
        raise
    conn.commit()
    return result


class SqliteWriter:
    """A pooled aiosqlite connection held under the SQLite write lock (`sqlite_writer`)."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    async def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """One write transaction, `BEGIN IMMEDIATE` .. `COMMIT` around `work(connection)`,
        in one hand-off to aiosqlite's thread (`sqlite_in_thread`); rolled back if `work`
        raises. SQLite's operational errors are 503 (`sqlite_errors`). A cancelled caller
        waits for the transaction to end in the thread before the write lock is released
        (the next writer would otherwise wait in SQLite's busy handler), then is
        cancelled: the transaction may have committed, as a cancel during the `COMMIT`
        hand-off always could."""
        with sqlite_errors():
            done = asyncio.ensure_future(
                sqlite_in_thread(self._driver, partial(_in_transaction, work))
            )
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                done.add_done_callback(_retrieve)
                with suppress(asyncio.CancelledError):
                    await asyncio.wait([done])
                raise


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()


@asynccontextmanager
async def sqlite_writer(
    engine: AsyncEngine,
    write_lock: asyncio.Lock | None,
    kept: KeptSqliteConnections | None = None,
) -> AsyncIterator[SqliteWriter]:
    """SQLite writes on aiosqlite itself: the write lock (`SqlStore`'s, FIFO) and a
    connection, for `SqliteWriter.transaction`: one of `kept` (the writer's connection
    kept under the lock: no pool checkout), else one checked out of the pool. Through
    SQLAlchemy's `engine.begin()` a transaction also built a Connection, a RootTransaction
    and their events around the pool checkout (7 % of a SQLite turn's CPU, py-spy), for
    statements that no longer go through SQLAlchemy. (No `write_lock`: a writer of the
    file without the store's lock, as in tests.)"""
    async with write_lock or nullcontext():
        if kept is not None:
            async with kept.driver() as driver:
                yield SqliteWriter(driver)
            return
        pooled = await engine.raw_connection()
        try:
            driver = pooled.driver_connection
            if driver is None:
                raise StoreUnavailable("The state store connection was closed.")
            yield SqliteWriter(driver)
        finally:
            # back to the pool (its reset rolls back a transaction left open: a failed
            # COMMIT), in a greenlet as SQLAlchemy's own close does
            await greenlet_spawn(pooled.close)


class KeptSqliteConnections:
    """SQLite: aiosqlite connections a store keeps checked out of the pool for one use
    (`SqlConnections`: its single-statement reads on the driver, the turn's conversation
    read, the path walk, the checkpoint list; and, under the write lock, its driver-level
    write transactions), so a call takes one from a list instead of the pool. A checkout
    through `engine.connect()` built a Connection, its execution options and events and ran
    the pool's checkout and check-in around a single driver call: ~78 us of CPU on this
    machine (measured, 2,000 checkouts; 3.4 % of a SQLite turn for its conversation read,
    py-spy); the pool's own checkout and check-in (`engine.raw_connection()`) ~32 us. Up
    to `keep` connections are kept: a call finding none idle checks one out of the pool,
    and gives it back if `keep` are idle by then; a call that failed or was cancelled gives
    its connection back to the pool, whose reset rolls back a transaction left open, as
    before. The connections are the pool's (same `connect` hook: WAL, busy timeout,
    `isolation_level = None`, so a lone statement is its own transaction and sees the
    latest commit); `close` gives them back."""

    def __init__(self, engine: AsyncEngine, keep: int) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[Any] = []  # PoolProxiedConnection
        self._closed = False

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        pooled = self._idle.pop() if self._idle else await self._engine.raw_connection()
        try:
            driver = pooled.driver_connection
            if driver is None:
                raise StoreUnavailable("The state store connection was closed.")
            yield driver
        except BaseException:
            await greenlet_spawn(pooled.close)
            raise
        if self._closed or len(self._idle) >= self._keep:
            await greenlet_spawn(pooled.close)
        else:
            self._idle.append(pooled)

    async def close(self) -> None:
        """Give the kept connections back to the pool (before it is disposed); a call in
        flight gives its own back when it ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for pooled in idle:
            await greenlet_spawn(pooled.close)


@dataclass(frozen=True)
class RenderedStatement:
    """A SQLAlchemy Core statement rendered once for asyncpg (`$n` placeholders), to run
    on the driver: its SQL text, its bind names in `$n` order and the values of the binds
    that carry one (literals). Type processors do not run: parameters must be what the
    driver takes (str, int, aware datetimes, timedeltas)."""

    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]

    @classmethod
    def of(cls, statement: Any, dialect: Dialect) -> RenderedStatement:
        compiled = statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        return cls(compiled.string, names, dict(compiled.params))

    def args(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(params[n] if n in params else self.defaults[n] for n in self.names)
