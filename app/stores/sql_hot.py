"""The turn's conversation read on the driver itself (aiosqlite / asyncpg), not through
SQLAlchemy Core, and the conversation row as the drivers return it.

Every turn reads its conversation once by id. Through Core that one SELECT costs a
compiled-cache lookup, an execution context, the adapted cursor (on aiosqlite four hand-offs
to the driver's thread: cursor, execute, fetchall, close) and the result layer's type
processors, which on SQLite cost more CPU than executing the statement. Here the SQL text
is rendered once per dialect, run on the driver connection with positional parameters, and
the row is mapped by position (`app.stores.sql_driver` has the shared plumbing; the
turn's write is `app.stores.sql_hot_append`).

The dialect differences are in the row mappings: SQLite keeps datetimes as naive UTC text
in SQLAlchemy's fixed-width format (`UTCDateTime`) and JSON as text; asyncpg returns
aware datetimes and, with SQLAlchemy's codecs installed on the connection, decoded JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.engine import Dialect

from app.domain import Conversation
from app.stores.sql_driver import (
    sqlite_datetime,
    sqlite_errors,
    sqlite_text,
)
from app.stores.sql_tables import conversation_from_row, conversations

CONVERSATION_COLUMNS = tuple(c.name for c in conversations.c)
_DATETIME_AT = tuple(
    CONVERSATION_COLUMNS.index(n) for n in ("created_at", "updated_at", "expires_at")
)
_JSON_AT = tuple(CONVERSATION_COLUMNS.index(n) for n in ("meta", "data"))


def sqlite_conversation_row(row: Sequence[Any]) -> dict[str, Any]:
    """A `conversations` row of `CONVERSATION_COLUMNS` from aiosqlite, as a mapping of
    model values (`conversation_from_row`'s input)."""
    values = list(row)
    for i in _DATETIME_AT:
        if values[i] is not None:
            values[i] = sqlite_datetime(values[i])
    for i in _JSON_AT:
        values[i] = json.loads(values[i])
    return dict(zip(CONVERSATION_COLUMNS, values, strict=True))


def postgres_conversation_row(row: Sequence[Any]) -> dict[str, Any]:
    """Likewise from asyncpg."""
    values = list(row)
    for i in _DATETIME_AT:
        if values[i] is not None:
            values[i] = values[i].astimezone(UTC)
    return dict(zip(CONVERSATION_COLUMNS, values, strict=True))


def _conversation_sql(placeholders: tuple[str, str]) -> str:
    cid, now = placeholders
    cols = ", ".join(CONVERSATION_COLUMNS)
    return (
        f"SELECT {cols} FROM conversations WHERE id = {cid}"
        f" AND (expires_at IS NULL OR expires_at > {now})"
    )


class ConversationRead(Protocol):
    async def __call__(
        self, driver: Any, conversation_id: str, now: datetime
    ) -> Conversation | None:
        """On `driver`, the aiosqlite / asyncpg connection (`SqlConnections._read_driver`)."""
        ...


class _SqliteRead:
    sql = _conversation_sql(("?", "?"))

    async def __call__(
        self, driver: Any, conversation_id: str, now: datetime
    ) -> Conversation | None:
        with sqlite_errors():
            # one hand-off: execute and fetchall (aiosqlite closes the cursor)
            rows = list(
                await driver.execute_fetchall(self.sql, (conversation_id, sqlite_text(now)))
            )
        return conversation_from_row(sqlite_conversation_row(rows[0])) if rows else None


POSTGRES_READ = _conversation_sql(("$1", "$2"))


class _PostgresRead:
    sql = POSTGRES_READ

    async def __call__(
        self, driver: Any, conversation_id: str, now: datetime
    ) -> Conversation | None:
        row = await driver.fetchrow(self.sql, conversation_id, now)
        return conversation_from_row(postgres_conversation_row(row)) if row is not None else None


def conversation_read(dialect: Dialect) -> ConversationRead:
    """The driver-level read of a conversation by id for this engine's dialect."""
    if dialect.name == "sqlite":
        return _SqliteRead()
    if dialect.name == "postgresql":
        return _PostgresRead()
    raise ValueError(f"no driver-level reads for dialect {dialect.name!r}")
