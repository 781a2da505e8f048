"""Engine construction, dialect traits, error translation and migrations of the SQL store.

SQLite specifics live here so `sql.py` reads the same for both databases:

* the `sqlite3` driver's own transaction handling is switched off (`isolation_level =
  None`) and SQLAlchemy's `begin` event emits the BEGIN: plain `BEGIN` for reads and
  `BEGIN IMMEDIATE` for connections marked with the `WRITE` execution option, so a write
  transaction takes SQLite's write lock up front instead of failing with "database is
  locked" when it tries to upgrade a read lock;
* WAL journal (readers never block the writer), foreign keys on, a busy timeout for
  writers of other processes, `synchronous=NORMAL` (durable in WAL except for the last
  transactions before a power loss).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_

from app.errors import ParleyError, StoreUnavailable

log = logging.getLogger("parley.stores.sql")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Execution option that marks a connection as a writer (see module docstring).
WRITE_OPTION = "parley_write"
# Execution option of a connection that runs one statement, outside any transaction
# (`single_statement_reads`).
SINGLE_STATEMENT_OPTION = "parley_single_statement"

# pg_advisory_xact_lock keys: (namespace, key) pairs; the namespace keeps ours apart from
# any other application sharing the database.
PG_LOCK_NAMESPACE = 0x5041524C  # "PARL"
PG_MIGRATION_LOCK = 0

# A pooled PostgreSQL connection unused for longer than this is pinged before it is handed
# out (see `_ping_idle_connections`).
IDLE_PING_S = 10.0
_LAST_USED = "parley_last_used"


@dataclass(frozen=True)
class DialectTraits:
    """What the database can do, so the store branches on capability, not on names.

    single_writer: one write transaction at a time for the whole database (SQLite). The
        store then queues its writers on an asyncio.Lock instead of letting them spin in
        the busy handler, and needs no row locks (a writer sees the latest committed state).
    advisory_locks: `pg_advisory_xact_lock` is available (PostgreSQL); used to order a
        lineage's deletions against forks/head moves that could make a message reachable.
    jsonb: JSON is queried with PostgreSQL's jsonb operators (`->>`); otherwise with
        SQLite's JSON1 functions.
    """

    single_writer: bool
    advisory_locks: bool
    jsonb: bool

    @classmethod
    def of(cls, dialect: Dialect) -> DialectTraits:
        postgres = dialect.name == "postgresql"
        return cls(single_writer=dialect.name == "sqlite", advisory_locks=postgres, jsonb=postgres)


def parse_url(url: str) -> URL:
    """Validate a store URL: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://...`."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise ValueError(f"Invalid SQL store URL: {exc}") from exc
    driver = parsed.drivername
    if driver == "sqlite+aiosqlite":
        if parsed.database in (None, "", ":memory:") or "mode=memory" in url:
            raise ValueError(
                "An in-memory SQLite database is not supported as a state store; "
                "use memory:// for an ephemeral store or give a file path."
            )
    elif driver != "postgresql+asyncpg":
        raise ValueError(
            f"Unsupported SQL driver {driver!r}: use sqlite+aiosqlite:///path or "
            "postgresql+asyncpg://user@host/db."
        )
    return parsed


def sqlite_path(url: URL) -> Path | None:
    return Path(url.database) if url.drivername.startswith("sqlite") and url.database else None


# asyncpg prepares every statement, and after five executions PostgreSQL may switch a
# prepared statement to its generic plan, costed with the table statistics of that moment.
# On a new deployment that is a near-empty `messages` table, where a sequential scan looks
# cheapest: the path walk (`sql_hot_path`, one lookup per step) then scans the
# table at every step, and a 500-message page of a 10,000-message history took over 5 s
# instead of ~2 ms. Custom plans are made with the parameters and current statistics.
PG_SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


def create_engine(
    url: URL,
    *,
    connect_timeout_s: float = 5.0,
    busy_timeout_ms: int = 10_000,
    idle_ping_s: float = IDLE_PING_S,
    pool_size: int = 10,
    max_overflow: int = 20,
) -> AsyncEngine:
    """`pool_size` + `max_overflow` (PostgreSQL only, `PARLEY_DATABASE_POOL_SIZE` /
    `PARLEY_DATABASE_MAX_OVERFLOW`): connections kept, and opened beyond them under load;
    when all are busy a call waits for one, within the call's timeout."""
    if url.drivername.startswith("sqlite"):
        engine = create_async_engine(
            url,
            connect_args={"timeout": busy_timeout_ms / 1000},
            pool_reset_on_return=None,  # `_on_reset` below
        )
        _install_sqlite_hooks(engine, busy_timeout_ms)
        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=connect_timeout_s * 2,
        connect_args={"timeout": connect_timeout_s, "server_settings": PG_SERVER_SETTINGS},
    )
    _ping_idle_connections(engine, idle_ping_s)
    return engine


def _ping_idle_connections(engine: AsyncEngine, idle_s: float) -> None:
    """Ping a pooled connection only when it sat unused for more than `idle_s`.

    `pool_pre_ping=True` pinged on every checkout: a round trip per transaction, ~5 per
    turn and a quarter of a PostgreSQL turn's CPU (bench/README.md, profile findings).
    A connection in steady use is known alive; the ones that die unnoticed are those left
    idle through a server restart, an idle timeout or a network change, and those are
    still pinged (a failed ping raises `DisconnectionError`, on which the pool replaces
    the connection and retries the checkout). A connection killed while in steady use
    fails its next statement instead: SQLAlchemy invalidates it (and every connection
    pooled before it) and `unavailable_on_connection_errors` answers that one call 503
    `store_unavailable`; the next checkout connects afresh."""
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last_used = record.info.get(_LAST_USED)
        if last_used is None or time.monotonic() - last_used <= idle_s:
            return  # new, or used moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            log.info("an idle pooled connection was dead, replacing it: %r", exc)
            raise sa_exc.DisconnectionError(str(exc)) from exc


def _install_sqlite_hooks(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, state: Any) -> None:
        """A connection back in the pool is rolled back only if the driver is in a
        transaction. The pool's default reset rolls back every connection it gets back,
        including one whose transaction just committed or that never began one (the
        driver-level reads): on aiosqlite each is a hand-off to the connection's thread,
        four per turn for nothing. (A connection the pool terminates, or returns outside
        the event loop, is not reset: the default reset skips those as well.)"""
        if state.terminate_only or not state.asyncio_safe:
            return
        if dbapi_connection.driver_connection.in_transaction:
            dbapi_connection.rollback()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(SINGLE_STATEMENT_OPTION, False):
            return  # isolation_level None: the statement is its own transaction
        # On the driver itself (one hand-off to aiosqlite's thread): through
        # `exec_driver_sql` it took SQLAlchemy's execution path and the adapted cursor's
        # three hand-offs, ~3 times per turn.
        begin = "BEGIN IMMEDIATE" if options.get(WRITE_OPTION, False) else "BEGIN"
        driver: Any = conn.connection.driver_connection
        try:
            await_(driver.execute(begin))
        except sqlite3.OperationalError as exc:  # busy past the busy timeout, disk I/O
            log.warning("state store unavailable: %s", exc)
            raise StoreUnavailable(f"The state store is unavailable: {exc}") from exc


def single_statement_reads(engine: AsyncEngine) -> AsyncEngine:
    """`engine` for reads of exactly one statement, run without a transaction around
    them: a single SELECT sees one consistent snapshot on its own. That spares SQLite its
    `BEGIN` (one more hop to aiosqlite's thread) and PostgreSQL its `BEGIN` and
    `ROLLBACK` round trips (AUTOCOMMIT). Never use it for several statements that must
    agree with each other. (SQLite keeps its driver-level `isolation_level = None`:
    SQLAlchemy's AUTOCOMMIT would reset it on check-in, so the `begin` hook skips instead.)"""
    if DialectTraits.of(engine.dialect).single_writer:
        return engine.execution_options(**{SINGLE_STATEMENT_OPTION: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, DNS, timeouts (TimeoutError is an OSError)
    sa_exc.TimeoutError,  # no pooled connection became free in time
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


@contextmanager
def unavailable_on_connection_errors() -> Iterator[None]:
    """Turn "the database is not there" into `StoreUnavailable` (503), nothing else."""
    try:
        yield
    except ParleyError:
        raise
    except sa_exc.DBAPIError as exc:
        if (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
            or isinstance(exc.orig, _CONNECTION_ERRORS)
        ):
            log.warning("state store unavailable: %s", exc.orig or exc)
            raise StoreUnavailable(f"The state store is unavailable: {_brief(exc)}") from exc
        raise
    except _CONNECTION_ERRORS as exc:
        log.warning("state store unavailable: %r", exc)
        raise StoreUnavailable(f"The state store is unavailable: {_brief(exc)}") from exc


def _brief(exc: BaseException) -> str:
    inner = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0] if text else ''}".rstrip(": ")


def upgrade_schema(connection: Connection) -> None:
    """`alembic upgrade head` on an open connection (call through `run_sync`).

    On PostgreSQL a transaction-scoped advisory lock makes concurrent starts of several
    instances migrate one after the other; on SQLite the caller's `BEGIN IMMEDIATE` does.
    """
    if DialectTraits.of(connection.dialect).advisory_locks:
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:ns, :key)"),
            {"ns": PG_LOCK_NAMESPACE, "key": PG_MIGRATION_LOCK},
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
