"""The context window's read, `get_path`, on the driver itself (aiosqlite / asyncpg).

A turn whose window the message cache does not hold (the first turn after a restart, a
conversation this instance has not served, a window evicted) reads the path ending at its
head, ~200 messages in one or two statements. Through SQLAlchemy Core that statement cost
~1.5 ms before its first row and ~10 us per row on top of SQLite's own work (0.3 ms for
200 rows, measured with sqlite3 on a 10,000-message conversation): a compiled-cache lookup,
an execution context, the adapted cursor's hand-offs to aiosqlite's thread and the result
layer's row processing. Here the recursive query is SQL text written once per dialect and
each row's JSON text goes straight to `Message.model_validate_json`.

The query is `sql_queries.path_statement`'s: it follows `parent_id` through the
(lineage_id, id) primary key and stops after `limit` rows, so it costs `limit` index
lookups whatever the length of the history.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.engine import Dialect

from app.domain import Message
from app.stores.sql_driver import sqlite_errors
from app.stores.sql_tables import message_from_json


def _path_sql(lineage: str, message: str, limit: str, as_text: str) -> str:
    return (
        "WITH RECURSIVE path(id, parent_id, data, n) AS ("
        f" SELECT id, parent_id, data, 1 FROM messages WHERE lineage_id = {lineage}"
        f" AND id = {message}"
        " UNION ALL"
        " SELECT parent.id, parent.parent_id, parent.data, path.n + 1"
        " FROM messages AS parent JOIN path ON parent.id = path.parent_id"
        f" WHERE parent.lineage_id = {lineage} AND path.n < {limit})"
        f" SELECT {as_text} FROM path ORDER BY n"
    )


class PathRead(Protocol):
    async def __call__(
        self, driver: Any, lineage_id: str, message_id: str, limit: int
    ) -> list[Message]:
        """On `driver`, the aiosqlite / asyncpg connection (`SqlConnections._read_driver`):
        the message `message_id` and its ancestors, newest first, at most `limit`."""
        ...


class _SqlitePath:
    sql = _path_sql("?1", "?2", "?3", "CAST(data AS TEXT)")

    async def __call__(
        self, driver: Any, lineage_id: str, message_id: str, limit: int
    ) -> list[Message]:
        with sqlite_errors():  # one hand-off: execute and fetchall
            rows = await driver.execute_fetchall(self.sql, (lineage_id, message_id, limit))
        return [message_from_json(r[0]) for r in rows]


POSTGRES_PATH = _path_sql("$1", "$2", "$3::integer", "data::text")


class _PostgresPath:
    async def __call__(
        self, driver: Any, lineage_id: str, message_id: str, limit: int
    ) -> list[Message]:
        rows = await driver.fetch(POSTGRES_PATH, lineage_id, message_id, limit)
        return [message_from_json(r[0]) for r in rows]


def path_read(dialect: Dialect) -> PathRead:
    """The driver-level path read for this engine's dialect."""
    if dialect.name == "sqlite":
        return _SqlitePath()
    if dialect.name == "postgresql":
        return _PostgresPath()
    raise ValueError(f"no driver-level reads for dialect {dialect.name!r}")
