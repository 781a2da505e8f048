"""Idempotency records in the SQL store's database: they survive restarts and are shared
by every instance on the same PostgreSQL (DESIGN §4, §5).

Table `idempotency_keys (scope, key) PK, fingerprint, ref, extra, expires_at` (migration
0005):

* reserve: `INSERT ... ON CONFLICT (scope, key) DO UPDATE ... WHERE expires_at <= now
  RETURNING ref`: a free or expired key is taken in one statement (first writer wins: on
  PostgreSQL a concurrent insert of the same key waits for the other transaction and then
  sees its row); no row back means the key is in use, and the existing record is read in
  the same transaction. A key forgotten between the two statements is tried again.
* forget: `DELETE ... WHERE scope, key, ref`: only a record still pointing at the caller's
  run goes, so a late cleanup never removes a record a retry reserved since.
* expiry: a record is dead from its `expires_at` (reserve takes it over); dead rows are
  deleted at most `SWEEP_BATCH` at a time, at most every `SWEEP_EVERY_S` per instance,
  by the reserving instance (bounded work on the request path, none when idle).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.coordination.base import IdempotencyKeys, IdempotencyRecord
from app.coordination.sql_clock import SqlClock
from app.stores.sql_engine import unavailable_on_connection_errors
from app.stores.sql_tables import idempotency_keys

SWEEP_EVERY_S = 30.0
SWEEP_BATCH = 500
_RESERVE_ATTEMPTS = 5


class SqlIdempotencyKeys(IdempotencyKeys):
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Any = time.monotonic,
        write_lock: asyncio.Lock | None = None,
    ) -> None:
        """`write_lock`: the store's (`StateStore.sql_write_lock`, SQLite), see `SqlClock`."""
        self._sql = SqlClock(engine, write_lock=write_lock)
        self._clock = clock
        self._next_sweep = 0.0

    async def reserve(
        self, scope: str, key: str, record: IdempotencyRecord, *, ttl_s: float
    ) -> IdempotencyRecord | None:
        t = idempotency_keys
        values = self._sql.insert(t).values(
            scope=scope,
            key=key,
            fingerprint=record.fingerprint,
            ref=record.ref,
            extra=record.extra,
            expires_at=self._sql.later(ttl_s),
        )
        statement = values.on_conflict_do_update(
            index_elements=[t.c.scope, t.c.key],
            set_={
                "fingerprint": values.excluded.fingerprint,
                "ref": values.excluded.ref,
                "extra": values.excluded.extra,
                "expires_at": values.excluded.expires_at,
            },
            where=t.c.expires_at <= self._sql.now(),
        ).returning(t.c.ref)
        existing_query = sa.select(t.c.fingerprint, t.c.ref, t.c.extra).where(
            t.c.scope == scope, t.c.key == key
        )
        with unavailable_on_connection_errors():
            await self._maybe_sweep()
            for _ in range(_RESERVE_ATTEMPTS):
                # Two statements, each its own transaction: the read after a lost insert
                # sees the winner's committed row (or none if it was forgotten since).
                async with self._sql.statement() as conn:
                    if (await conn.execute(statement)).first() is not None:
                        return None
                    row = (await conn.execute(existing_query)).first()
                if row is not None:
                    return IdempotencyRecord(
                        fingerprint=row.fingerprint, ref=row.ref, extra=dict(row.extra or {})
                    )
        raise RuntimeError(f"idempotency key {key!r} kept changing hands")  # pragma: no cover

    async def forget(self, scope: str, key: str, *, ref: str) -> None:
        t = idempotency_keys
        with unavailable_on_connection_errors():
            async with self._sql.statement() as conn:
                await conn.execute(
                    sa.delete(t).where(t.c.scope == scope, t.c.key == key, t.c.ref == ref)
                )

    async def _maybe_sweep(self) -> None:
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_S
        async with self._sql.statement() as conn:
            await sweep_expired_keys(conn, self._sql)


async def sweep_expired_keys(conn: AsyncConnection, sql: SqlClock) -> int:
    """Delete up to `SWEEP_BATCH` expired records; how many went."""
    t = idempotency_keys
    batch = (
        sa.select(t.c.scope, t.c.key)
        .where(t.c.expires_at <= sql.now())
        .limit(SWEEP_BATCH)
        .subquery()
    )
    result = await conn.execute(
        sa.delete(t).where(sa.tuple_(t.c.scope, t.c.key).in_(sa.select(batch.c.scope, batch.c.key)))
    )
    return int(result.rowcount or 0)
