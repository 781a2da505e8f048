"""Run records and event logs in the SQL store's database (migration 0005).

* `run_records`: one row per run, the `RunRecord` as JSON plus what queries need: `owner`
  (the instance executing it), `terminal`, the event counters `last_seq` / `first_seq`
  (events below `first_seq` were dropped), `events_expire_at` (set by the terminal event:
  events are kept `retention_s` after it) and `expires_at` (a finished record is kept
  `record_retention_s`, default 24 h: at least as long as an idempotency key, so a retry
  always finds the result its key points at), and `conversation_id` (migration 0009: the
  index `erase` reads when the conversation is deleted). Records survive a restart.
* `run_events` (PostgreSQL): `(run_id, seq) PK, type, data`. The executing instance
  writes its runs' events behind (`app.coordination.sql_event_writer`: batched, terminal
  events awaited); anyone else's `publish` bumps `last_seq`, inserts the event and
  `pg_notify`s in one statement. Followers read the table and sleep on `LISTEN`
  (`app.coordination.sql_listen`).
  On SQLite (one serving process per file, `app.stores.sqlite_owner`) events stay in
  process memory (`MemoryRunLog(events_only=True)`, bounded by `max_retained_events`,
  `PARLEY_RUN_LOG_MAX_EVENTS`): a write transaction per streamed delta would queue
  behind every turn's commit for no reader. Records are not kept there twice: a finished
  run's in-memory entry goes with its events (its last seq is kept for the newest
  `max_records`, `PARLEY_RUN_RECORDS_MAX`). After a restart, or once its events are gone,
  a reconnect gets a `run.snapshot` built from the record.
* `coordination_instances`: each instance's heartbeat (renewed every `heartbeat_s`, valid
  `instance_ttl_s`). A run that is not terminal and whose owner's heartbeat expired is
  marked `failed` with code `instance_lost` by whichever instance reads it (`get`,
  followers on each wake), in a compare-and-set on `terminal`; its idempotency keys are
  freed in the same transaction, so the client's retry runs the turn (once).
  With `sole_instance` (SQLite: the lifespan holds the file's single-server claim) the
  heartbeats found at start-up are dropped at once: their runs read `instance_lost` right
  after a restart instead of `instance_ttl_s` later. A sole instance also writes a run's
  record only when it is created and when it ends: a status change in between
  (`running`) is kept in memory (`get` answers with it), which spares SQLite a write
  transaction per turn and changes nothing after a crash (the run reads `instance_lost`).
* Clean-up is bounded: at most every `SWEEP_EVERY_S` per instance, one batch of expired
  records (their events cascade), of expired event logs and of dead heartbeats.

This module is the `RunLog` seam (records, follow, cancellations); its parts live in
siblings: the event log's statements (`sql_run_events`), failing a dead instance's run
(`sql_run_lost`), a sole instance's run ends written behind (`sql_run_end_behind`),
following a run on PostgreSQL (`sql_run_follow`), the heartbeat (`sql_heartbeat`), the
clean-up (`sql_run_sweep`) and erasing a deleted conversation's runs (`sql_run_erase`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.coordination.base import (
    TERMINAL_EVENTS,
    LeaseRelease,
    RunEvent,
    RunLog,
    RunRecord,
    TurnLease,
    TurnLocks,
)
from app.coordination.memory import MemoryRunLog
from app.coordination.sql_clock import SqlClock
from app.coordination.sql_event_writer import EventWriter, warm_statements
from app.coordination.sql_heartbeat import InstanceHeartbeat
from app.coordination.sql_listen import CANCELS_CHANNEL, PgListener
from app.coordination.sql_locks import offered_seq
from app.coordination.sql_run_end_behind import EndsBehind
from app.coordination.sql_run_erase import erase_runs
from app.coordination.sql_run_events import append_event, trim_events
from app.coordination.sql_run_follow import SqlRunFollow
from app.coordination.sql_run_lost import mark_lost
from app.coordination.sql_run_rows import (
    PostgresRunRows,
    RowWrite,
    RunRows,
    SqliteRunRows,
    postgres_write,
)
from app.coordination.sql_run_sweep import SWEEP_EVERY_S, sweep_runs
from app.coordination.sql_write_batch import WriteBatch
from app.stores.sql_driver import WarmStatement, prepare_on, prepare_on_connect
from app.stores.sql_engine import unavailable_on_connection_errors

log = logging.getLogger("parley.coordination.sql")


class SqlRunLog(RunLog):
    """See the module docstring. `close()` stops the heartbeat and removes this instance's
    row (its runs are finished by then: the manager drains before the coordinator closes).
    `write_lock`: the store's (`StateStore.sql_write_lock`, SQLite), see `SqlClock`."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        retention_s: float = 3600.0,
        record_retention_s: float = 86400.0,
        max_events: int = 10_000,
        max_retained_events: int = 10_000,
        max_records: int = 10_000,
        instance_ttl_s: float = 10.0,
        heartbeat_s: float = 2.0,
        wake_s: float = 2.0,
        sole_instance: bool = False,
        write_lock: asyncio.Lock | None = None,
        call_timeout_s: float | None = None,
    ) -> None:
        # the run records' writes (creation, end) keep their SQLite connection: `close`
        self._sql = SqlClock(
            engine, write_lock=write_lock, keep_writer=True, call_timeout_s=call_timeout_s
        )
        self._retention_s = retention_s
        self._record_retention_s = record_retention_s
        self._max_events = max(2, max_events)
        self.wake_s = wake_s
        self.instance_id = uuid.uuid4().hex
        self._listener = PgListener(engine) if self._sql.postgres else None
        self._memory = (
            None
            if self._sql.postgres
            else MemoryRunLog(
                retention_s=retention_s,
                max_events=max_events,
                max_retained_events=max_retained_events,
                max_records=max_records,
                events_only=True,
            )
        )
        self._writer = (
            EventWriter(
                self._sql,
                retention_s=retention_s,
                record_retention_s=record_retention_s,
                max_events=self._max_events,
            )
            if self._sql.postgres
            else None
        )
        # SQLite: the records' writes in group commits (`app.coordination.sql_write_batch`)
        self._batch = None if self._sql.postgres else WriteBatch(self._sql)
        # sole instance (SQLite): the newest record of each live run created here, when
        # newer than its row (a status change before the end: see `save`)
        self._live: dict[str, RunRecord] | None = {} if sole_instance else None
        # the record's statements, on the driver (`app.coordination.sql_run_rows`),
        # prepared by each new PostgreSQL connection when it opens
        self._rows: RunRows = SqliteRunRows()
        self._prepared: list[WarmStatement] = []
        if self._sql.postgres:
            rows = self._rows = PostgresRunRows()
            self._prepared = [*rows.warm_statements(), *warm_statements()]
            prepare_on_connect(engine, self._prepared)
        self._heartbeat = InstanceHeartbeat(
            self._sql,
            self.instance_id,
            ttl_s=instance_ttl_s,
            every_s=heartbeat_s,
            sole_instance=sole_instance,
        )
        self._follower = SqlRunFollow(
            self._sql,
            self._listener,
            self.instance_id,
            wake_s=wake_s,
            beat=self._beat_once,
            mark_lost=self._mark_lost,
        )
        # sole instance on SQLite: a run's end written behind (`sql_run_end_behind`)
        self._ends_behind = (
            EndsBehind(self._batch, self._rows, self._live, record_retention_s=record_retention_s)
            if self._batch is not None and self._live is not None
            else None
        )
        self._next_sweep = 0.0

    # --- records -----------------------------------------------------------------------

    async def create(self, record: RunRecord) -> None:
        await self._beat_once()
        await self._maybe_sweep()
        terminal = record.run.status.terminal
        keep_s = self._record_retention_s if terminal else None  # (created finished: rare)
        await self._write(self._rows.insert(record, self.instance_id, keep_s))
        if self._memory is not None:
            await self._memory.create(record)
        if self._writer is not None:
            self._writer.adopt(record.run.id)
        if self._live is not None and not terminal:
            self._live[record.run.id] = record

    async def save(self, record: RunRecord) -> None:
        terminal = record.run.status.terminal
        live = self._live is not None and record.run.id in self._live
        if live and (not terminal or self._batch is not None):
            # Nobody else reads this database (sole instance), so a status change before
            # the end (`queued` -> `running`) is kept here, not written: were the process
            # to die, the next one marks the run `instance_lost` from whichever live
            # status its row says. The end is written behind (`EndsBehind`).
            assert self._live is not None
            self._live[record.run.id] = record
            if self._memory is not None:
                await self._memory.save(record)
            if terminal:
                assert self._ends_behind is not None
                self._ends_behind.write(record)
            return
        if terminal and self._writer is not None and self._writer.owns(record.run.id):
            await self._writer.flush(record.run.id)  # its events in before its end record
        write = (
            self._rows.update_end(record, self._record_retention_s)
            if terminal
            else self._rows.update_live(record)
        )
        if await self._write(write, counted=True) == 0:
            await self.create(record)
        elif self._memory is not None:
            await self._memory.save(record)
        if terminal and self._live is not None:
            self._live.pop(record.run.id, None)

    async def _write(self, write: RowWrite, *, counted: bool = False) -> int:
        """One write statement, its own transaction (in a group commit on SQLite); its
        rowcount when `counted`."""
        if self._batch is not None:
            return await self._batch.execute(write, counted=counted)
        with unavailable_on_connection_errors():
            count = await postgres_write(self._sql, write)
        return count if counted else -1

    async def create_and_publish(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        if self._writer is None or record.run.status.terminal or type_ in TERMINAL_EVENTS:
            return await super().create_and_publish(record, type_, data)
        await self._beat_once()
        await self._maybe_sweep()
        event, _ = await self._writer.create(record, self.instance_id, type_, data)  # one statement
        return event

    async def create_and_publish_locking(
        self, locks: TurnLocks, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> tuple[RunEvent, TurnLease | None]:
        """PostgreSQL, when the lease locks are this database's (`SqlLeaseBackend`): the
        run's creation and its try at the lock in one statement (`sql_run_create`)."""
        if self._writer is None or record.run.status.terminal or type_ in TERMINAL_EVENTS:
            return await super().create_and_publish_locking(locks, record, type_, data)
        await self._beat_once()
        await self._maybe_sweep()
        offer = await locks.offer(record.run.conversation_id, record.run.id, self._sql.reader)
        riding = None if offer is None else (offer.keys[0], offer.args)
        step = asyncio.ensure_future(
            self._writer.create(record, self.instance_id, type_, data, riding=riding)
        )
        if offer is None:  # (another backend's locks, or a local acquisition comes first)
            event, _ = await step
            return event, None
        try:
            event, row = await asyncio.shield(step)
        except asyncio.CancelledError:
            offer.abandon(_offer_outcome(step))  # it goes on; a lock it took is undone
            raise
        except BaseException:
            offer.done(None, None)  # (unknown: released if it was taken, token-checked)
            raise
        seq = offered_seq(row)
        return event, offer.done(seq is not None, seq)

    async def save_and_publish(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        run_id = record.run.id
        live = not record.run.status.terminal and type_ not in TERMINAL_EVENTS
        if live and self._writer is not None and self._live is None and self._writer.owns(run_id):
            # a status change (`running`) rides with the event's write-behind batch
            return await self._writer.publish_with_record(record, type_, data)
        if not self._ends_here(record, type_):
            return await super().save_and_publish(record, type_, data)
        return await self._end(record, type_, data, None)

    async def save_and_publish_releasing(
        self, lease: TurnLease, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        if not self._ends_here(record, type_):
            return await super().save_and_publish_releasing(lease, record, type_, data)
        # PostgreSQL: a lease row is released in the statement that ends the run
        release = lease.take_release(self._sql.reader)
        if release is None:
            await lease.release()
        return await self._end(record, type_, data, release)

    def _ends_here(self, record: RunRecord, type_: str) -> bool:
        """A run this instance's event writer owns, ended with its terminal event."""
        ends = record.run.status.terminal and type_ in TERMINAL_EVENTS
        return ends and self._writer is not None and self._writer.owns(record.run.id)

    async def _end(
        self, record: RunRecord, type_: str, data: dict[str, Any], release: LeaseRelease | None
    ) -> RunEvent:
        assert self._writer is not None
        event = await self._writer.end(record, type_, data, release)  # one statement
        if self._live is not None:
            self._live.pop(record.run.id, None)
        return event

    async def get(self, run_id: str) -> RunRecord | None:
        if self._live is not None and (live := self._live.get(run_id)) is not None:
            return live
        await self._beat_once()  # (sole instance: the dead predecessor's runs are lost now)
        row = await self._follower.read(run_id)
        if row is None:
            return None
        record = RunRecord.model_validate(row.record)
        if not row.terminal and not row.owner_alive:
            return await self._mark_lost(run_id) or await self.get(run_id)
        return record

    async def _mark_lost(self, run_id: str) -> RunRecord | None:
        """`app.coordination.sql_run_lost.mark_lost` (not a run whose commit landed)."""
        return await mark_lost(
            self._sql,
            run_id,
            retention_s=self._retention_s,
            record_retention_s=self._record_retention_s,
        )

    # --- events ------------------------------------------------------------------------

    async def publish(self, run_id: str, type_: str, data: dict[str, Any]) -> RunEvent:
        if self._memory is not None:
            return await self._memory.publish(run_id, type_, data)
        if self._writer is not None and self._writer.owns(run_id):
            return await self._writer.publish(run_id, type_, data)
        with unavailable_on_connection_errors():
            async with self._sql.statement() as conn:  # one round trip (autocommit)
                event, first = await append_event(
                    self._sql, conn, run_id, type_, data, retention_s=self._retention_s
                )
            if event.seq - first + 1 > self._max_events:
                async with self._sql.write() as conn:
                    await trim_events(conn, run_id, event.seq, max_events=self._max_events)
        return event

    def follow(self, run_id: str, *, after: int) -> AsyncGenerator[RunEvent, None]:
        if self._memory is not None:  # (EventsExpired for a run of before a restart)
            return self._memory.follow(run_id, after=after)  # (not re-yielded: a layer less)
        return self._follower.follow(run_id, after=after)

    # --- erasure -----------------------------------------------------------------------

    async def erase(
        self, conversation_id: str, lineage_id: str | None, *, created_at: datetime | None = None
    ) -> list[str]:
        """`app.coordination.sql_run_erase`; on SQLite the in-memory events first (the
        runs whose terminal event is not in yet are live, whatever their row says)."""
        live_here: list[str] = []
        if self._batch is not None:
            await self._batch.flush()  # the ends written behind are in: those runs ended
        if self._memory is not None:
            live_here = await self._memory.erase(conversation_id, lineage_id, created_at=created_at)
        return await erase_runs(
            self._sql, conversation_id, lineage_id, created_at=created_at, live_here=live_here
        )

    # --- cancellation ------------------------------------------------------------------

    async def request_cancel(self, run_id: str) -> None:
        if self._memory is not None:
            await self._memory.request_cancel(run_id)
            return
        with unavailable_on_connection_errors():
            async with self._sql.statement() as conn:
                await conn.execute(sa.select(sa.func.pg_notify(CANCELS_CHANNEL, run_id)))

    async def cancel_requests(self) -> AsyncIterator[str]:
        if self._memory is not None:
            async for run_id in self._memory.cancel_requests():
                yield run_id
            return
        assert self._listener is not None
        with self._listener.cancels() as queue:
            while True:
                try:
                    await self._listener.ensure()
                except Exception as exc:  # the database is down: keep trying
                    log.warning("cannot listen for cancellations: %r", exc)
                with contextlib.suppress(TimeoutError):
                    yield await asyncio.wait_for(queue.get(), timeout=self.wake_s)

    # --- heartbeat and clean-up --------------------------------------------------------

    async def warm_up(self) -> None:
        """The heartbeat and the first sweep, which the first `create` ran (~22 ms of a
        fresh server's first turn on SQLite, measured)."""
        await self._beat_once()
        await self._maybe_sweep()

    async def prepare(self, conn: AsyncConnection) -> None:
        """PostgreSQL: prepare the run log's statements on `conn`, a connection opened
        before this run log was (`SqlCoordinator.warm_up` holds every pooled one)."""
        await prepare_on(conn, self._prepared)

    async def _beat_once(self) -> None:
        await self._heartbeat.start()

    async def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_S
        try:
            await self.sweep()
        except Exception as exc:
            log.warning("run record sweep failed: %r", exc)

    async def sweep(self) -> None:
        """One bounded batch of clean-up (`app.coordination.sql_run_sweep`)."""
        await sweep_runs(self._sql)

    async def close(self) -> None:
        if self._ends_behind is not None:
            self._ends_behind.close()
        if self._writer is not None:
            await self._writer.close()
        if self._batch is not None:
            await self._batch.close()
        await self._heartbeat.close()
        if self._listener is not None:
            await self._listener.close()
        await self._sql.close()  # after the batch's last write


async def _offer_outcome(step: Awaitable[tuple[RunEvent, Any]]) -> tuple[bool, int | None]:
    """What a cancelled creation's try at the lock did, once its statement ended."""
    _, row = await step
    seq = offered_seq(row)
    return seq is not None, seq
