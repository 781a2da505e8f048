"""Checkpoints in the SQL backend (`checkpoints` table); `SqlStore` opens the connection
(and, for a new one, checks the conversation under its lineage's lock)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import Checkpoint
from app.domain.incarnation import Incarnation
from app.errors import Conflict
from app.stores.sql_driver import sqlite_errors, sqlite_text
from app.stores.sql_engine import PG_LOCK_NAMESPACE
from app.stores.sql_tables import checkpoints, json_text

_SQLITE_OWNER = "SELECT 1 FROM conversations WHERE id = ?"
_SQLITE_OWNER_OF = _SQLITE_OWNER + " AND lineage_id = ? AND created_at = ?"
_SQLITE_INSERT = (
    "INSERT INTO checkpoints (conversation_id, id, kind, message_id, created_at, data)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def sqlite_values(cp: Checkpoint) -> tuple[str, str, str, str | None, str, str]:
    """The row for `sqlite_insert`, driver-ready (made on the event loop, not in the
    driver's thread): `created_at` as SQLite stores a `UTCDateTime`, the whole checkpoint
    as JSON text encoded once by pydantic (as `message_values` does for messages)."""
    created = sqlite_text(cp.created_at)
    return (cp.conversation_id, cp.id, cp.kind, cp.message_id, created, cp.model_dump_json())


def sqlite_owner(incarnation: Incarnation | None) -> tuple[str, str] | None:
    """`sqlite_insert`'s `of`: the incarnation as SQLite stores it (made on the event loop)."""
    if incarnation is None:
        return None
    return (incarnation.lineage_id, sqlite_text(incarnation.created_at))


def sqlite_insert(
    values: Sequence[Any], conn: sqlite3.Connection, *, of: tuple[str, str] | None = None
) -> bool:
    """SQLite, in aiosqlite's thread inside the store's write transaction
    (`SqliteWriter.transaction`: an auto checkpoint turn's write is one hand-off to that
    thread, it was eight through Core): the checkpoint's row if its conversation is there,
    with `of` (`sqlite_owner`) that incarnation of it (False: it is not). SQLite has one
    writer, so nothing reclaims the lineage between the check and the insert (PostgreSQL
    takes the lineage's lock: `insert`)."""
    if of is None:
        owner = conn.execute(_SQLITE_OWNER, (values[0],)).fetchone()
    else:
        owner = conn.execute(_SQLITE_OWNER_OF, (values[0], *of)).fetchone()
    if owner is None:
        return False
    try:
        conn.execute(_SQLITE_INSERT, values)
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"Checkpoint {values[1]!r} already exists.") from exc
    return True


# PostgreSQL, on the driver, in one transaction (`SqlStore.create_checkpoint`): the
# conversation's lineage locked (shared) as it is read, then the row inserted if the
# conversation is still there, read again by that statement's own snapshot, taken after
# the lock (READ COMMITTED): a reclaim of the lineage that held the lock has committed by
# then (it sees the checkpoint, or the checkpoint sees the conversation gone). Through
# Core that was BEGIN, the read, the lock, the read again, the INSERT, COMMIT.
# $1 the conversation, $2 / $3 its incarnation's lineage and created_at (NULL: any), then
# the lock's namespace or the checkpoint's columns
_POSTGRES_OWNER = (
    "FROM conversations WHERE id = $1::varchar"
    " AND ($2::varchar IS NULL OR lineage_id = $2::varchar)"
    " AND ($3::timestamptz IS NULL OR created_at = $3::timestamptz)"
)
_POSTGRES_LOCK_OWNER = "SELECT pg_advisory_xact_lock_shared($4, hashtext(lineage_id)) " + (
    _POSTGRES_OWNER
)
_POSTGRES_INSERT = (
    "INSERT INTO checkpoints (conversation_id, id, kind, message_id, created_at, data)"
    " SELECT $1::varchar, $4::varchar, $5::varchar, $6::varchar, $7::timestamptz,"
    f" CAST($8 AS jsonb) WHERE EXISTS (SELECT 1 {_POSTGRES_OWNER}) RETURNING id"
)


async def postgres_insert(
    driver: Any, checkpoint: Checkpoint, incarnation: Incarnation | None = None
) -> bool:
    """On the asyncpg connection `driver`, in the caller's transaction: the checkpoint's row
    if its conversation is there, with `incarnation` that incarnation of it (False: it is
    not). A duplicate is asyncpg's `UniqueViolationError`, for the caller once the
    transaction is rolled back."""
    cp = checkpoint
    of = (None, None) if incarnation is None else (incarnation.lineage_id, incarnation.created_at)
    owner = (cp.conversation_id, *of)
    if await driver.fetchrow(_POSTGRES_LOCK_OWNER, *owner, PG_LOCK_NAMESPACE) is None:
        return False
    values = (cp.id, cp.kind, cp.message_id, cp.created_at, cp.model_dump_json())
    inserted = await driver.fetchval(_POSTGRES_INSERT, *owner, *values)
    return inserted is not None


def _list_sql(conversation: str, kind: str | None, as_text: str) -> str:
    where = f"conversation_id = {conversation}" + (f" AND kind = {kind}" if kind else "")
    return f"SELECT {as_text} FROM checkpoints WHERE {where} ORDER BY created_at, id"


class CheckpointsRead(Protocol):
    async def __call__(
        self, driver: Any, conversation_id: str, kind: str | None
    ) -> list[Checkpoint]:
        """On `driver`, the aiosqlite / asyncpg connection (`SqlConnections._read_driver`):
        the conversation's checkpoints (of `kind`, None: all), oldest first."""
        ...


class _SqliteCheckpoints:
    sql = {k: _list_sql("?", "?" if k else None, "CAST(data AS TEXT)") for k in (False, True)}

    async def __call__(
        self, driver: Any, conversation_id: str, kind: str | None
    ) -> list[Checkpoint]:
        args = (conversation_id,) if kind is None else (conversation_id, kind)
        with sqlite_errors():  # one hand-off: execute and fetchall
            rows = await driver.execute_fetchall(self.sql[kind is not None], args)
        return [Checkpoint.model_validate_json(r[0]) for r in rows]


class _PostgresCheckpoints:
    sql = {k: _list_sql("$1", "$2" if k else None, "data::text") for k in (False, True)}

    async def __call__(
        self, driver: Any, conversation_id: str, kind: str | None
    ) -> list[Checkpoint]:
        args = (conversation_id,) if kind is None else (conversation_id, kind)
        rows = await driver.fetch(self.sql[kind is not None], *args)
        return [Checkpoint.model_validate_json(r[0]) for r in rows]


def checkpoints_read(dialect: Dialect) -> CheckpointsRead:
    """The listing on the driver (an auto checkpoint turn, every 10th by default, lists up
    to `max_auto` (50) of them to prune; through Core, on SQLite, that one SELECT was six
    hand-offs to aiosqlite's thread: BEGIN, cursor, execute, fetchall, close, ROLLBACK),
    each row's JSON text parsed and validated in one step."""
    if dialect.name == "sqlite":
        return _SqliteCheckpoints()
    if dialect.name == "postgresql":
        return _PostgresCheckpoints()
    raise ValueError(f"no driver-level reads for dialect {dialect.name!r}")


async def get(conn: AsyncConnection, conversation_id: str, checkpoint_id: str) -> Checkpoint | None:
    cp = checkpoints
    text = await conn.scalar(
        sa.select(json_text(cp.c.data)).where(
            cp.c.conversation_id == conversation_id, cp.c.id == checkpoint_id
        )
    )
    return Checkpoint.model_validate_json(text) if text is not None else None


async def delete(conn: AsyncConnection, conversation_id: str, checkpoint_id: str) -> bool:
    cp = checkpoints
    result = await conn.execute(
        sa.delete(cp)
        .where(cp.c.conversation_id == conversation_id, cp.c.id == checkpoint_id)
        .returning(cp.c.id)
    )
    return result.first() is not None
