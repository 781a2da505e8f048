"""The `run_records` writes of `SqlRunLog` on the driver itself (aiosqlite / asyncpg): a
run's record when it is created, changes status, and ends; two of them every turn.

They are written once per dialect as SQL text with driver-ready values
(`app.stores.sql_driver` says why: SQLAlchemy's execution costs more CPU than these
statements, and on aiosqlite three hand-offs to the driver's thread instead of one). On
SQLite they run in `WriteBatch`'s group commits, with the instance's own clock; on
PostgreSQL one statement in autocommit, with the server's `clock_timestamp()` (see
`SqlClock`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.coordination.base import RunRecord
from app.coordination.sql_clock import SqlClock
from app.stores.sql_driver import (
    WarmStatement,
    postgres_rowcount,
    sqlite_optional_text,
)

_COLUMNS = (
    "run_id, owner, terminal, record, last_seq, first_seq, finished_at, expires_at, conversation_id"
)


@dataclass(frozen=True)
class RowWrite:
    """One statement and its positional arguments (`?` on SQLite, `$n` on PostgreSQL)."""

    sql: str
    args: tuple[Any, ...]


class SqliteRunRows:
    _insert = f"INSERT INTO run_records ({_COLUMNS}) VALUES (?, ?, ?, ?, 0, 1, NULL, ?, ?)"
    _live = "UPDATE run_records SET record = ?, terminal = 0 WHERE run_id = ?"
    _end = (
        "UPDATE run_records SET record = ?, terminal = 1, finished_at = ?, expires_at = ?"
        " WHERE run_id = ?"
    )

    def insert(self, record: RunRecord, owner: str, keep_s: float | None) -> RowWrite:
        """The new run's row; `keep_s`: a finished record's retention (None: live)."""
        terminal = keep_s is not None
        expires = _later(keep_s) if keep_s is not None else None
        args = (record.run.id, owner, int(terminal), record.model_dump_json())
        expires_text = sqlite_optional_text(expires)
        return RowWrite(self._insert, (*args, expires_text, record.run.conversation_id))

    def update_live(self, record: RunRecord) -> RowWrite:
        return RowWrite(self._live, (record.model_dump_json(), record.run.id))

    def update_end(self, record: RunRecord, keep_s: float) -> RowWrite:
        now = datetime.now(UTC)
        times = (sqlite_optional_text(now), sqlite_optional_text(now + timedelta(seconds=keep_s)))
        return RowWrite(self._end, (record.model_dump_json(), *times, record.run.id))


class PostgresRunRows:
    _insert = (
        f"INSERT INTO run_records ({_COLUMNS}) VALUES ($1, $2, $3, $4, 0, 1, NULL,"
        " CASE WHEN $3 THEN clock_timestamp() + $5::interval END, $6)"
    )
    _live = "UPDATE run_records SET record = $1, terminal = false WHERE run_id = $2"
    _end = (
        "UPDATE run_records SET record = $1, terminal = true, finished_at = clock_timestamp(),"
        " expires_at = clock_timestamp() + $2::interval WHERE run_id = $3"
    )

    def insert(self, record: RunRecord, owner: str, keep_s: float | None) -> RowWrite:
        terminal = keep_s is not None
        keep = timedelta(seconds=keep_s or 0)
        args = (record.run.id, owner, terminal, record.model_dump_json(), keep)
        return RowWrite(self._insert, (*args, record.run.conversation_id))

    def update_live(self, record: RunRecord) -> RowWrite:
        return RowWrite(self._live, (record.model_dump_json(), record.run.id))

    def update_end(self, record: RunRecord, keep_s: float) -> RowWrite:
        keep = timedelta(seconds=keep_s)
        return RowWrite(self._end, (record.model_dump_json(), keep, record.run.id))

    def warm_statements(self) -> list[WarmStatement]:
        """These statements for `sql_driver.prepare_on_connect`."""
        return [WarmStatement(sql) for sql in (self._insert, self._live, self._end)]


RunRows = SqliteRunRows | PostgresRunRows


async def postgres_write(sql: SqlClock, write: RowWrite) -> int:
    """`write` on PostgreSQL, one statement in autocommit; its row count."""
    async with sql.postgres_statement() as driver:
        return postgres_rowcount(await driver.execute(write.sql, *write.args))


def _later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
