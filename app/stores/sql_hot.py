"""The turn's conversation read on the driver itself (aiosqlite / asyncpg), not through
SQLAlchemy Core.

Every turn reads its conversation once by id. Through Core that one SELECT costs a
compiled-cache lookup, an execution context, the adapted cursor (on aiosqlite four hand-offs
to the driver's thread: cursor, execute, fetchall, close) and the result layer's type
processors, which on SQLite cost more CPU than executing the statement. Here the SQL text
is rendered once per dialect, run on the driver connection with positional parameters, and
the row is mapped by position. The connection still comes from SQLAlchemy's pool (so pool
sizing, idle pings and call timeouts are unchanged); a connection that fails mid-call is
invalidated, as SQLAlchemy would do.

The dialect differences are all in `_SqliteRead` / `_PostgresRead`: SQLite keeps datetimes
as naive UTC text in SQLAlchemy's fixed-width format (`UTCDateTime`) and JSON as text;
asyncpg returns aware datetimes and, with SQLAlchemy's codecs installed on the connection,
decoded JSON.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import Conversation
from app.errors import StoreUnavailable
from app.stores.sql_tables import conversation_from_row, conversations

_COLUMNS = tuple(c.name for c in conversations.c)
_DATETIMES = ("created_at", "updated_at", "expires_at")
_JSONS = ("meta", "data")
_DATETIME_AT = tuple(_COLUMNS.index(n) for n in _DATETIMES)
_JSON_AT = tuple(_COLUMNS.index(n) for n in _JSONS)


def _conversation_sql(placeholders: tuple[str, str]) -> str:
    cid, now = placeholders
    cols = ", ".join(_COLUMNS)
    return (
        f"SELECT {cols} FROM conversations WHERE id = {cid}"
        f" AND (expires_at IS NULL OR expires_at > {now})"
    )


class ConversationRead(Protocol):
    async def __call__(
        self, conn: AsyncConnection, conversation_id: str, now: datetime
    ) -> Conversation | None: ...


def sqlite_text(value: datetime) -> str:
    """`value` as SQLite stores a `UTCDateTime`: naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`
    (SQLAlchemy's format; text order is time order, so `>` on the column is correct)."""
    v = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def _sqlite_row(row: Sequence[Any]) -> dict[str, Any]:
    values = list(row)
    for i in _DATETIME_AT:
        if values[i] is not None:
            values[i] = datetime.fromisoformat(values[i]).replace(tzinfo=UTC)
    for i in _JSON_AT:
        values[i] = json.loads(values[i])
    return dict(zip(_COLUMNS, values, strict=True))


def _from_sqlite(row: Sequence[Any]) -> Conversation:
    return conversation_from_row(_sqlite_row(row))


def _from_postgres(row: Sequence[Any]) -> Conversation:
    values = list(row)
    for i in _DATETIME_AT:
        if values[i] is not None:
            values[i] = values[i].astimezone(UTC)
    return conversation_from_row(dict(zip(_COLUMNS, values, strict=True)))


async def _driver(conn: AsyncConnection) -> Any:
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:  # a connection SQLAlchemy has already detached
        raise StoreUnavailable("The state store connection was closed.")
    return driver


class _SqliteRead:
    sql = _conversation_sql(("?", "?"))

    async def __call__(
        self, conn: AsyncConnection, conversation_id: str, now: datetime
    ) -> Conversation | None:
        driver = await _driver(conn)
        try:
            # one hand-off for execute, one for fetchall (aiosqlite closes the cursor)
            rows = await driver.execute_fetchall(self.sql, (conversation_id, sqlite_text(now)))
        except sqlite3.OperationalError as exc:  # locked, disk I/O, unusable file
            raise StoreUnavailable(f"The state store is unavailable: {exc}") from exc
        rows = list(rows)
        return _from_sqlite(rows[0]) if rows else None


class _PostgresRead:
    sql = _conversation_sql(("$1", "$2"))

    async def __call__(
        self, conn: AsyncConnection, conversation_id: str, now: datetime
    ) -> Conversation | None:
        driver = await _driver(conn)
        try:
            row = await driver.fetchrow(self.sql, conversation_id, now)
        except asyncpg.PostgresError as exc:  # e.g. a statement timeout, shutdown
            await conn.invalidate()
            raise StoreUnavailable(f"The state store is unavailable: {exc}") from exc
        except BaseException:
            # as SQLAlchemy does: a connection whose call failed or was cancelled midway
            # (timeout) is not returned to the pool
            await conn.invalidate()
            raise
        return _from_postgres(row) if row is not None else None


def conversation_read(dialect: Dialect) -> ConversationRead:
    """The driver-level read of a conversation by id for this engine's dialect."""
    if dialect.name == "sqlite":
        return _SqliteRead()
    if dialect.name == "postgresql":
        return _PostgresRead()
    raise ValueError(f"no driver-level reads for dialect {dialect.name!r}")


def _sqlite_head_cas_sql(*, first: bool, status: bool) -> str:
    """`sql_queries._append_cas` for SQLite, with the same named parameters."""
    head = "head_message_id IS NULL" if first else "head_message_id = :expected_head"
    return (
        "UPDATE conversations SET head_message_id = :head, message_count = :message_count,"
        " version = version + 1, input_tokens = input_tokens + :input_tokens,"
        " output_tokens = output_tokens + :output_tokens,"
        " total_tokens = total_tokens + :total_tokens, cost_usd = cost_usd + :cost_usd,"
        " updated_at = :now" + (", status = :status" if status else "") + " WHERE id = :cid"
        f" AND {head} AND (expires_at IS NULL OR expires_at > :now)"
        f" RETURNING {', '.join(_COLUMNS)}"
    )


_SQLITE_HEAD_CAS = {
    (first, status): _sqlite_head_cas_sql(first=first, status=status)
    for first in (False, True)
    for status in (False, True)
}


async def sqlite_head_cas(conn: AsyncConnection, params: dict[str, Any]) -> dict[str, Any] | None:
    """`append_messages`' compare-and-set of the head (`sql_queries.append_statement`'s
    parameters) on aiosqlite, inside the caller's write transaction: the `BEGIN
    IMMEDIATE` that `sql_engine` emits when the transaction begins is on this same driver
    connection. The new row as a column mapping, or None if nothing matched.

    SQLite only: on asyncpg, SQLAlchemy's adapter opens the transaction lazily at its
    first statement, so a statement run on the driver before it would commit on its own.
    """
    sql = _SQLITE_HEAD_CAS[("expected_head" not in params, "status" in params)]
    bound = {**params, "now": sqlite_text(params["now"])}
    driver = await _driver(conn)
    try:
        rows = list(await driver.execute_fetchall(sql, bound))
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"The state store is unavailable: {exc}") from exc
    return _sqlite_row(rows[0]) if rows else None
