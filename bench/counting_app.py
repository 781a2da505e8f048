"""Parley with its store calls, SQL statements and Redis commands counted, for
`bench/profile_turns.py`: how many reads and writes one turn makes, exactly (a sampling
profiler gives time, not counts).

The app is `app.main.create_app()` unchanged, plus, in this benchmark process only:

* every `StateStore` method of the concrete stores (`SqlStore`, `RedisStore`) wrapped to
  count its calls;
* a class-level SQLAlchemy `before_cursor_execute` listener counting statements by their
  first words (`SELECT messages`, `UPDATE conversations`, ...), plus transaction begins and
  commits, pool checkouts and connection pings (PostgreSQL pings only a connection idle
  for `IDLE_PING_S`, `app.stores.sql_engine`);
* the statements run on the driver directly, under SQLAlchemy's pool (`app.stores.sql_driver`:
  the turn's conversation read and append, the run records), counted as `driver ...` by
  wrapping aiosqlite's and asyncpg's statement methods (SQLAlchemy's own adapters use
  other methods: its cursors, prepared statements and `executemany` on asyncpg);
* `redis.asyncio` `execute_command` and pipeline `execute` wrapped to count commands,
  pipelines and the commands inside them;
* `GET /__bench/counts`, which returns the counters and resets them.

    uvicorn bench.counting_app:create_app --factory
"""

from __future__ import annotations

import functools
import inspect
import re
from collections import Counter
from typing import Any

from fastapi import FastAPI

from app.main import create_app as create_parley
from app.stores.base import StateStore

COUNTS: dict[str, Counter[str]] = {"store": Counter(), "sql": Counter(), "redis": Counter()}
_TABLE_AFTER = re.compile(r"\b(?:FROM|INTO)\s+\"?(\w+)", re.I)


def sql_shape(statement: str) -> str:
    """`SELECT ... FROM messages ...` -> `SELECT messages` (verb and first table)."""
    words = statement.split()
    if not words:
        return ""
    verb = words[0].upper()
    if verb == "UPDATE" and len(words) > 1:
        return f"UPDATE {words[1].strip(chr(34))}"
    m = _TABLE_AFTER.search(statement)
    return f"{verb} {m.group(1)}" if m and verb in ("SELECT", "INSERT", "DELETE") else verb


def _count_methods(cls: type) -> None:
    if getattr(cls, "_bench_counted", False):
        return
    for name, _member in inspect.getmembers(StateStore, inspect.iscoroutinefunction):
        if name.startswith("_") or not hasattr(cls, name):
            continue
        original = getattr(cls, name)

        def make(original: Any, name: str) -> Any:
            @functools.wraps(original)
            async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
                COUNTS["store"][name] += 1
                return await original(self, *args, **kwargs)

            return counted

        setattr(cls, name, make(original, name))
    cls._bench_counted = True  # type: ignore[attr-defined]


def instrument() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from app.stores.redis_store import RedisStore
    from app.stores.sql import SqlStore

    _count_methods(SqlStore)
    _count_methods(RedisStore)
    from sqlalchemy.pool import Pool

    if not event.contains(Engine, "before_cursor_execute", _on_sql):
        event.listen(Engine, "before_cursor_execute", _on_sql)
        # Round trips that are not statements: a transaction's BEGIN and COMMIT (asyncpg;
        # SQLite's BEGIN is a statement of its own here), and the pool's pre-ping on every
        # checkout (PostgreSQL, `pool_pre_ping=True`).
        event.listen(Engine, "begin", lambda _c: COUNTS["sql"].update(["(transaction begin)"]))
        event.listen(Engine, "commit", lambda _c: COUNTS["sql"].update(["(transaction commit)"]))
        event.listen(Pool, "checkout", lambda *_: COUNTS["sql"].update(["(pool checkout)"]))
        _count_pings()
        _count_driver_statements()
    _count_redis()


def _count_pings() -> None:
    """PostgreSQL round trips that are not statements: pings, and the BEGIN / COMMIT /
    ROLLBACK asyncpg actually sends (SQLAlchemy's begin event also fires for AUTOCOMMIT
    connections, which send none)."""
    from asyncpg.transaction import Transaction
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    do_ping = PGDialect_asyncpg.do_ping

    def counted_ping(self: Any, dbapi_connection: Any) -> Any:
        COUNTS["sql"]["(ping)"] += 1
        return do_ping(self, dbapi_connection)

    PGDialect_asyncpg.do_ping = counted_ping  # type: ignore[method-assign]
    for name in ("start", "commit", "rollback"):
        original = getattr(Transaction, name)

        def make(original: Any, label: str) -> Any:
            async def counted(self: Any) -> Any:
                COUNTS["sql"][label] += 1
                return await original(self)

            return counted

        setattr(Transaction, name, make(original, f"(asyncpg {name.upper()} sent)"))


def _count_driver_statements() -> None:
    import aiosqlite
    import asyncpg

    def wrap(cls: type, name: str, *, is_async: bool) -> None:
        original = getattr(cls, name)

        def count(statement: Any) -> None:
            if isinstance(statement, str) and statement.strip(" ;"):  # (";": a ping)
                COUNTS["sql"][f"driver {sql_shape(statement.strip())}"] += 1

        if is_async:

            async def counted_async(self: Any, statement: Any, *args: Any, **kw: Any) -> Any:
                count(statement)
                return await original(self, statement, *args, **kw)

            setattr(cls, name, counted_async)
        else:  # aiosqlite's: return an awaitable context manager

            def counted(self: Any, statement: Any, *args: Any, **kw: Any) -> Any:
                count(statement)
                return original(self, statement, *args, **kw)

            setattr(cls, name, counted)

    for name in ("execute", "executemany", "execute_fetchall"):
        wrap(aiosqlite.Connection, name, is_async=False)
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        wrap(asyncpg.Connection, name, is_async=True)


def _on_sql(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    COUNTS["sql"][sql_shape(statement)] += 1


def _count_redis() -> None:
    from redis.asyncio.client import Pipeline, Redis

    if getattr(Redis, "_bench_counted", False):
        return
    execute_command = Redis.execute_command
    pipeline_execute = Pipeline.execute

    async def counted_command(self: Any, *args: Any, **options: Any) -> Any:
        COUNTS["redis"][f"cmd {str(args[0]).upper()}"] += 1
        return await execute_command(self, *args, **options)

    async def counted_pipeline(self: Any, raise_on_error: bool = True) -> Any:
        COUNTS["redis"]["pipeline"] += 1
        COUNTS["redis"]["commands in pipelines"] += len(self.command_stack)
        return await pipeline_execute(self, raise_on_error)

    Redis.execute_command = counted_command  # type: ignore[method-assign]
    Pipeline.execute = counted_pipeline  # type: ignore[method-assign]
    Redis._bench_counted = True  # type: ignore[attr-defined]


def create_app() -> FastAPI:
    instrument()
    app = create_parley()

    @app.get("/__bench/counts", include_in_schema=False)
    async def counts() -> dict[str, dict[str, int]]:
        out = {k: dict(v) for k, v in COUNTS.items()}
        for v in COUNTS.values():
            v.clear()
        return out

    return app
