"""`append_messages`' writes on the driver itself (aiosqlite / asyncpg): the head's
compare-and-set and the messages' INSERT, the statements of every turn.

SQLite (inside the store's write transaction): the compare-and-set `UPDATE ... RETURNING`,
the expiry's UPDATE when the conversation has a TTL, one `executemany` INSERT, as plain
sqlite3 calls run in aiosqlite's thread: the transaction with its `BEGIN IMMEDIATE` and
`COMMIT` is one hand-off to that thread (`sql_driver.SqliteWriter`; it was four, and
through Core the INSERT alone took three).

PostgreSQL: all of it in ONE statement, run in autocommit (one round trip instead of
BEGIN, UPDATE, INSERT, COMMIT): a data-modifying CTE updates the conversation (head
compare-and-set, counters, the TTL's new expiry) and inserts the messages only if the
update matched. A statement is atomic, and the UPDATE's row lock still serializes
concurrent appends: the loser re-evaluates its WHERE against the winner's head, matches
nothing and inserts nothing. With media references the store runs the statement inside
its transaction instead (the references are written after it, in the same transaction).

`append_params` (`app.stores.sql_queries`) gives the parameters; each function returns
the new row as a mapping of model values, or None when nothing matched (the head moved,
the conversation is gone or expired). A message id already in the lineage is `Conflict`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import Message
from app.errors import Conflict
from app.stores.sql_driver import (
    WarmStatement,
    postgres_driver,
    sqlite_text,
)
from app.stores.sql_hot import (
    CONVERSATION_COLUMNS,
    POSTGRES_READ,
    postgres_conversation_row,
    sqlite_conversation_row,
)
from app.stores.sql_hot_path import POSTGRES_PATH

_RETURNING = ", ".join(CONVERSATION_COLUMNS)
_DUPLICATE = "A message with this id already exists in the lineage."


def message_values(m: Message) -> tuple[str, str | None, str, int, datetime, str]:
    """A `messages` row but its lineage, for the driver: the whole message as JSON text
    (encoded once, by pydantic), `created_at` as a datetime for the dialect to encode."""
    return (m.id, m.parent_id, m.conversation_id, m.depth, m.created_at, m.model_dump_json())


def _sqlite_head_cas_sql(*, first: bool, status: bool) -> str:
    head = "head_message_id IS NULL" if first else "head_message_id = :expected_head"
    return (
        "UPDATE conversations SET head_message_id = :head, message_count = :message_count,"
        " version = version + 1, input_tokens = input_tokens + :input_tokens,"
        " output_tokens = output_tokens + :output_tokens,"
        " total_tokens = total_tokens + :total_tokens, cost_usd = cost_usd + :cost_usd,"
        " updated_at = :now" + (", status = :status" if status else "") + " WHERE id = :cid"
        f" AND lineage_id = :lineage AND created_at = :created AND {head}"
        " AND (expires_at IS NULL OR expires_at > :now)"
        f" RETURNING {_RETURNING}"
    )


_SQLITE_HEAD_CAS = {
    (first, status): _sqlite_head_cas_sql(first=first, status=status)
    for first in (False, True)
    for status in (False, True)
}
_SQLITE_EXPIRES = "UPDATE conversations SET expires_at = ? WHERE id = ?"
_SQLITE_INSERT = (
    "INSERT INTO messages (lineage_id, id, parent_id, conversation_id, depth, created_at, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def sqlite_append(
    conn: sqlite3.Connection, params: dict[str, Any], messages: Sequence[Message]
) -> dict[str, Any] | None:
    """On the sqlite3 connection `conn`, in aiosqlite's thread (`sql_driver.sqlite_in_thread`)
    and inside the caller's write transaction (see the module docstring)."""
    sql = _SQLITE_HEAD_CAS[("expected_head" not in params, "status" in params)]
    now = params["now"]
    created = sqlite_text(params["created"])
    row = conn.execute(sql, {**params, "now": sqlite_text(now), "created": created}).fetchone()
    if row is None:
        return None
    stored = sqlite_conversation_row(row)
    if stored["ttl_seconds"] is not None:
        stored["expires_at"] = now + timedelta(seconds=stored["ttl_seconds"])
        conn.execute(_SQLITE_EXPIRES, (sqlite_text(stored["expires_at"]), params["cid"]))
    lineage_id = stored["lineage_id"]
    values = [(lineage_id, *v[:4], sqlite_text(v[4]), v[5]) for v in map(message_values, messages)]
    try:
        conn.executemany(_SQLITE_INSERT, values)
    except sqlite3.IntegrityError as exc:
        raise Conflict(_DUPLICATE) from exc
    return stored


_SQLITE_ALIVE = (
    "SELECT 1 FROM conversations WHERE id = ? AND lineage_id = ? AND created_at = ?"
    " AND (expires_at IS NULL OR expires_at > ?)"
)


def sqlite_alive(conn: sqlite3.Connection, params: dict[str, Any]) -> bool:
    """After a compare-and-set that matched nothing (same thread and transaction): whether
    the conversation is there (its head moved) or gone / expired / replaced by a namesake
    (another incarnation: `append_params`)."""
    p = params
    found = (p["cid"], p["lineage"], sqlite_text(p["created"]), sqlite_text(p["now"]))
    return conn.execute(_SQLITE_ALIVE, found).fetchone() is not None


def sqlite_append_or_alive(
    params: dict[str, Any], messages: Sequence[Message], conn: sqlite3.Connection
) -> tuple[dict[str, Any] | None, bool]:
    """`sqlite_append`, and when nothing matched, `sqlite_alive`: the whole of a SQLite
    append as one function for one hand-off to aiosqlite's thread."""
    stored = sqlite_append(conn, params, messages)
    if stored is not None:
        return stored, True
    return None, sqlite_alive(conn, params)


# $1 cid, $2 head, $3 message_count, $4-$6 tokens, $7 cost, $8 now, $9 status (NULL:
# unchanged), $10 expected head (NULL: none yet), $11-$16 the messages, column by column,
# $17 the lineage, $18 the conversation's created_at (its incarnation, `append_params`).
_POSTGRES_APPEND = f"""
WITH cas AS (
    UPDATE conversations SET
        head_message_id = $2, message_count = $3, version = version + 1,
        input_tokens = input_tokens + $4, output_tokens = output_tokens + $5,
        total_tokens = total_tokens + $6, cost_usd = cost_usd + $7, updated_at = $8,
        status = COALESCE($9, status),
        expires_at = CASE WHEN ttl_seconds IS NULL THEN expires_at
            ELSE $8 + make_interval(secs => ttl_seconds) END
    WHERE id = $1 AND lineage_id = $17 AND created_at = $18
        AND head_message_id IS NOT DISTINCT FROM $10
        AND (expires_at IS NULL OR expires_at > $8)
    RETURNING {_RETURNING}
), inserted AS (
    INSERT INTO messages (lineage_id, id, parent_id, conversation_id, depth, created_at, data)
    SELECT cas.lineage_id, m.id, m.parent_id, m.conversation_id, m.depth, m.created_at,
        CAST(m.data AS jsonb)
    FROM cas, unnest(
        CAST($11 AS text[]), CAST($12 AS text[]), CAST($13 AS text[]),
        CAST($14 AS integer[]), CAST($15 AS timestamptz[]), CAST($16 AS text[])
    ) AS m(id, parent_id, conversation_id, depth, created_at, data)
)
SELECT {_RETURNING} FROM cas
"""


async def postgres_append(
    conn: AsyncConnection,
    params: dict[str, Any],
    messages: Sequence[Message],
    *,
    in_transaction: bool,
) -> dict[str, Any] | None:
    """One statement (see the module docstring) on the driver under `conn`.
    `in_transaction`: the caller's transaction is open on the driver (with media
    references), else `conn` is in autocommit; checked, since a statement run before
    SQLAlchemy's adapter opened its transaction (it does so at the first statement it
    runs) would commit on its own."""
    async with postgres_driver(conn) as driver:
        if driver.is_in_transaction() != in_transaction:
            raise RuntimeError(f"append expected in_transaction={in_transaction}")
        return await postgres_append_on(driver, params, messages)


async def postgres_append_on(
    driver: Any, params: dict[str, Any], messages: Sequence[Message]
) -> dict[str, Any] | None:
    """The append's one statement on the asyncpg connection `driver` (in autocommit, or in
    the caller's transaction)."""
    ids, parents, conversations, depths, created, data = zip(
        *map(message_values, messages), strict=True
    )
    try:
        row = await driver.fetchrow(
            _POSTGRES_APPEND,
            params["cid"],
            params["head"],
            params["message_count"],
            params["input_tokens"],
            params["output_tokens"],
            params["total_tokens"],
            params["cost_usd"],
            params["now"],
            params.get("status"),
            params.get("expected_head"),
            ids,
            parents,
            conversations,
            depths,
            created,
            data,
            params["lineage"],
            params["created"],
        )
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(_DUPLICATE) from exc
    return postgres_conversation_row(row) if row is not None else None


_POSTGRES_ALIVE = (
    "SELECT 1 FROM conversations WHERE id = $1 AND lineage_id = $2 AND created_at = $3"
    " AND (expires_at IS NULL OR expires_at > $4)"
)


async def postgres_alive(driver: Any, params: dict[str, Any]) -> bool:
    """`sqlite_alive` on PostgreSQL's driver."""
    p = params
    found = await driver.fetchval(_POSTGRES_ALIVE, p["cid"], p["lineage"], p["created"], p["now"])
    return found is not None


def postgres_hot_statements() -> list[WarmStatement]:
    """The store's statements on the driver (the reads and the append), for
    `sql_driver.prepare_on_connect`."""
    return [WarmStatement(s) for s in (POSTGRES_READ, POSTGRES_PATH, _POSTGRES_APPEND)]
