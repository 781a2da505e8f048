"""Turn locks as lease rows in the SQL store's database, for instances that share
PostgreSQL (or one SQLite file) but no Redis.

Table `turn_leases (conversation_id PK, run_id, token, expires_at, seq)`, migrations 0003
and 0008:

* acquire: `INSERT ... ON CONFLICT (conversation_id) DO UPDATE SET run_id, token,
  expires_at, seq WHERE turn_leases.expires_at < now RETURNING seq` — a free or expired
  lease is taken in one statement; no row back means somebody holds it (whose run id is
  read in the same transaction);
* renew: `UPDATE ... SET expires_at = now + lease WHERE conversation_id AND token AND
  expires_at > now` (an expired lease is not revived: its holder counts it lost);
* release: `UPDATE ... SET token = '', expires_at = epoch WHERE conversation_id AND
  token`: the row stays, free, with its counter.

`seq` is the lock's acquisition counter (`LeaseLocks`, *stamps*): +1 when the row was
released (token `''`), +2 when an unreleased lease is taken over (its holder crashed, or
is an older version of this code that does not count), so such a takeover never matches
a remembered stamp; a new row (or one deleted by hand) starts from the clock in
microseconds, above anything it can have held.

On PostgreSQL each operation is one statement in autocommit (acquire's holder read joins
its upsert in a CTE), so one round trip; "now" is the server's `clock_timestamp()`, so
instances with skewed clocks still agree on expiry; SQLite is only shared by processes
of one host, which share a clock. On SQLite the writes run in `BEGIN IMMEDIATE`
transactions (the store's write option) and wait in SQLite's busy handler behind the
store's own writes.

On PostgreSQL a turn's first attempt rides with its run's creation, in the statement that
creates it (`acquire_step`, `sql_run_create.creating_with`, `TurnLocks.offer`): one round
trip per turn less.

Every lease statement commits synchronously: the acquisition carries the run's creation
when it rides with it (`sql_run_create`), whose loss in a server crash would leave a run
whose end cannot be written.

Rows stay (free or expired) until the conversation is locked again, which takes them over
in place: the table holds at most one row per conversation ever locked.
Waiting, renewal and cancellation safety are `LeaseLocks'` (polling 10 ms up to 100 ms:
each poll is a write transaction, so slower than Redis'). The engine belongs to the store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.coordination.lease_backend import Attempt, LeaseBackend, LeaseId, LeaseTiming
from app.coordination.lease_locks import LeaseLocks
from app.coordination.sql_run_create import creating_with
from app.stores.sql_driver import (
    RenderedStatement,
    WarmStatement,
    bounded_postgres_driver,
    postgres_rowcount,
    prepare_on,
    prepare_on_connect,
)
from app.stores.sql_engine import (
    WRITE_OPTION,
    single_statement_reads,
    unavailable_on_connection_errors,
)
from app.stores.sql_tables import UTCDateTime, turn_leases

SQL_TIMING = LeaseTiming(lease_s=10.0, poll_min_s=0.01, poll_max_s=0.1)
RELEASED = ""  # the token of a released row (no lease's: theirs are hex)
FREE_SINCE = datetime(1970, 1, 1, tzinfo=UTC)  # the expiry of a released row


class SqlLeaseBackend(LeaseBackend):
    """Its statements are built once, with bind parameters (building and cache-keying
    them per call cost more than running them: py-spy, PostgreSQL turns)."""

    def __init__(self, engine: AsyncEngine, *, call_timeout_s: float | None = None) -> None:
        """`call_timeout_s`: the bound of one driver statement (`_one_driver`)."""
        self._engine = engine
        self._call_timeout_s = call_timeout_s
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        name = engine.dialect.name
        if name not in ("postgresql", "sqlite"):
            raise ValueError(f"SQL turn leases need PostgreSQL or SQLite, not {name!r}")
        self._server_clock = name == "postgresql"
        # PostgreSQL runs each lease operation as one statement outside any transaction
        # (it is atomic by itself): no BEGIN and COMMIT round trips around it
        self._autocommit = single_statement_reads(engine) if self._server_clock else None
        t = turn_leases
        mine = sa.and_(t.c.conversation_id == sa.bindparam("cid"), t.c.token == sa.bindparam("tok"))
        self._holder_of = sa.select(t.c.run_id).where(t.c.conversation_id == sa.bindparam("cid"))
        insert = postgresql.insert(t) if self._server_clock else sqlite.insert(t)
        values = insert.values(
            conversation_id=sa.bindparam("cid"),
            run_id=sa.bindparam("rid"),
            token=sa.bindparam("tok"),
            expires_at=self._later(),
            seq=self._clock_us(),
        )
        self._acquire = values.on_conflict_do_update(
            index_elements=[t.c.conversation_id],
            set_={
                "run_id": values.excluded.run_id,
                "token": values.excluded.token,
                "expires_at": values.excluded.expires_at,
                "seq": t.c.seq + sa.case((t.c.token == RELEASED, 1), else_=2),
            },
            where=t.c.expires_at < self._now(),
        ).returning(t.c.seq)
        # PostgreSQL: one statement, the upsert and who holds the row as it was before it
        taken = self._acquire.cte("taken")
        self._acquire_or_holder = sa.select(
            sa.select(taken.c.seq).scalar_subquery(),
            self._holder_of.scalar_subquery(),
        )
        # only while unexpired: a renewal that arrives after the expiry (a partition
        # healed late) must not re-extend a lease its holder already counts as lost, or
        # the lock stays held by nobody for another lease (outside tester T2)
        self._renew = (
            sa.update(t).where(mine, t.c.expires_at > self._now()).values(expires_at=self._later())
        )
        self._release = (
            sa.update(t)
            .where(mine)
            .values(token=RELEASED, expires_at=sa.literal(FREE_SINCE, UTCDateTime()))
        )
        self._holder = sa.select(t.c.run_id).where(
            t.c.conversation_id == sa.bindparam("cid"), t.c.expires_at > self._now()
        )
        # PostgreSQL: the statements of every turn (acquire, release) and the renewals
        # run on asyncpg itself, rendered once (`sql_driver`: SQLAlchemy's execution cost
        # more than them), and every new connection prepares them when it opens
        self._driver: dict[str, RenderedStatement] = {}
        self.prepared: list[WarmStatement] = []
        if self._server_clock:
            self._driver = {
                name: RenderedStatement.of(statement, engine.dialect)
                for name, statement in (
                    ("acquire", self._acquire_or_holder),
                    ("holder_of", self._holder_of),
                    ("renew", self._renew),
                    ("release", self._release),
                )
            }
            # a run's creation with its first try at the lock (`acquire_step`)
            self._acquire_creating = creating_with(self._driver["acquire"].sql)
            self.prepared = [WarmStatement(rendered.sql) for rendered in self._driver.values()]
            self.prepared.append(WarmStatement(self._acquire_creating))
            prepare_on_connect(engine, self.prepared)

    @asynccontextmanager
    async def _one_write(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one write statement: on PostgreSQL in autocommit, on SQLite
        in the store's write transaction (`BEGIN IMMEDIATE`)."""
        with unavailable_on_connection_errors():
            if self._autocommit is not None:
                async with self._autocommit.connect() as conn:
                    yield conn
            else:
                async with self._writer.begin() as conn:
                    yield conn

    @asynccontextmanager
    async def _one_driver(self) -> AsyncIterator[Any]:
        """PostgreSQL: asyncpg itself for one statement in autocommit, its connection
        checked out without SQLAlchemy's `Connection`, bounded by `call_timeout_s`
        (`sql_driver.bounded_postgres_driver`)."""
        async with bounded_postgres_driver(self._engine, self._call_timeout_s) as driver:
            yield driver

    # "now", "now + lease" and the clock in µs: the server's on PostgreSQL, bound values
    # (`_times`) on SQLite
    def _now(self) -> sa.ColumnElement[Any]:
        if self._server_clock:
            return sa.func.clock_timestamp()
        return sa.bindparam("now", type_=UTCDateTime())

    def _later(self) -> sa.ColumnElement[Any]:
        if self._server_clock:
            # (the lease in whole ms: `acquire_step`'s arguments are str / int)
            ms = sa.literal_column("interval '1 millisecond'", sa.Interval())
            return sa.func.clock_timestamp() + sa.bindparam("lease_ms", type_=sa.Integer()) * ms
        return sa.bindparam("later", type_=UTCDateTime())

    def _clock_us(self) -> sa.ColumnElement[Any]:
        """Where a new row's counter starts."""
        if self._server_clock:
            epoch = sa.extract("epoch", sa.func.clock_timestamp())
            return sa.cast(epoch * 1_000_000, sa.BigInteger)
        return sa.bindparam("clock_us", type_=sa.BigInteger())

    def _times(self, lease_s: float | None = None) -> dict[str, Any]:
        lease = timedelta(seconds=lease_s or 0.0)
        if self._server_clock:
            return {"lease_ms": _ms(lease_s)} if lease_s is not None else {}
        now = datetime.now(UTC)
        times: dict[str, Any] = {"now": now}
        if lease_s is not None:
            times.update(later=now + lease, clock_us=time.time_ns() // 1000)
        return times

    async def try_acquire(self, lease: LeaseId, lease_s: float) -> Attempt:
        params = {
            "cid": lease.conversation_id,
            "rid": lease.run_id,
            "tok": lease.token,
            **self._times(lease_s),
        }
        if self._driver:
            acquire, holder_of = self._driver["acquire"], self._driver["holder_of"]
            async with self._one_driver() as driver:
                seq, holder = await driver.fetchrow(acquire.sql, *acquire.args(params))
                if seq is not None:
                    return Attempt(True, seq=int(seq))
                if holder is None:  # the row appeared after this statement's snapshot
                    holder = await driver.fetchval(holder_of.sql, *holder_of.args(params))
            return Attempt(False, holder=holder)
        async with self._one_write() as conn:
            taken = (await conn.execute(self._acquire, params)).first()
            if taken is not None:
                return Attempt(True, seq=int(taken[0]))
            holder = await conn.scalar(self._holder_of, params)
        return Attempt(False, holder=holder)

    async def renew(self, lease: LeaseId, lease_s: float) -> bool:
        params = {"cid": lease.conversation_id, "tok": lease.token, **self._times(lease_s)}
        if not self._server_clock:
            params.pop("clock_us")
        return await self._write_one_row("renew", self._renew, params)

    async def release(self, lease: LeaseId) -> bool:
        params = {"cid": lease.conversation_id, "tok": lease.token}
        return await self._write_one_row("release", self._release, params)

    def acquire_step(
        self, lease: LeaseId, lease_s: float, client: object
    ) -> tuple[list[str], list[str | int]] | None:
        """PostgreSQL, `client` being this backend's engine: the acquisition riding with a
        run's creation (`SqlRunLog.create_and_publish_locking`) as a `LeaseOffer`'s keys
        and arguments: [the statement, `sql_run_create.creating_with` the acquisition],
        the acquisition's arguments (after the creation's). Its row's first column is the
        counter when the lock was taken (`offered_seq`)."""
        if not self._driver or client is not self._engine:
            return None
        params = {
            "cid": lease.conversation_id,
            "rid": lease.run_id,
            "tok": lease.token,
            **self._times(lease_s),
        }
        return [self._acquire_creating], list(self._driver["acquire"].args(params))

    def release_key(self, lease: LeaseId, client: object) -> tuple[str, str] | None:
        """PostgreSQL, `client` being this backend's engine: (conversation id, token),
        for the run log's end statement to release the row as `release` does
        (`app.coordination.sql_event_writer`)."""
        if not self._server_clock or client is not self._engine:
            return None
        return lease.conversation_id, lease.token

    async def _write_one_row(
        self, name: str, statement: sa.Executable, params: dict[str, Any]
    ) -> bool:
        """`statement` (on the driver on PostgreSQL: `self._driver[name]`) changed one row."""
        if self._driver:
            rendered = self._driver[name]
            async with self._one_driver() as driver:
                status = await driver.execute(rendered.sql, *rendered.args(params))
            return postgres_rowcount(status) == 1
        async with self._one_write() as conn:
            result = await conn.execute(statement, params)
        return bool(result.rowcount == 1)

    async def prepare(self, conn: AsyncConnection) -> None:
        """PostgreSQL: prepare the lease statements on `conn`, a connection opened before
        this backend was (`SqlCoordinator.warm_up`)."""
        await prepare_on(conn, self.prepared)

    async def holder(self, conversation_id: str) -> str | None:
        params = {"cid": conversation_id, **self._times()}
        with unavailable_on_connection_errors():
            async with self._engine.connect() as conn:
                holder: str | None = await conn.scalar(self._holder, params)
        return holder


class SqlLeaseLocks(LeaseLocks):
    """`TurnLocks` shared through the database behind `engine` (see the module docstring).
    Pass the SQL store's engine (`SqlStore.engine`, after `open()`, which migrates)."""

    def __init__(
        self,
        engine: AsyncEngine,
        timing: LeaseTiming | None = None,
        *,
        call_timeout_s: float | None = None,
    ) -> None:
        self._sql_backend = SqlLeaseBackend(engine, call_timeout_s=call_timeout_s)
        super().__init__(self._sql_backend, timing or SQL_TIMING)

    async def prepare(self, conn: AsyncConnection) -> None:
        """`SqlLeaseBackend.prepare`."""
        await self._sql_backend.prepare(conn)


def offered_seq(row: Any) -> int | None:
    """The lock's counter from the row of `SqlLeaseBackend.acquire_step`'s statement, None
    when the lock was not taken (held by another run)."""
    seq = None if row is None else row[0]
    return None if seq is None else int(seq)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
