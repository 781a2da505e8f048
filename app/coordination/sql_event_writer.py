"""Write-behind of the events of the runs an instance executes (PostgreSQL).

Streaming a turn publishes an event per delta; waiting for a database round trip on each
would slow every turn down by the number of its events. The executing instance is the
only publisher of its runs (it created them), so it numbers their events itself and a
background task writes whatever accumulated (lingering `LINGER_S` for more when no one
waits for the write) in one statement (`_WRITE_BATCH`, run in
autocommit on the driver, `app.stores.sql_driver`: one round trip, atomic): the events,
`last_seq` (and the event retention, after a terminal event) on the records, then one
`pg_notify` per run, delivered when the statement commits. `publish` returns at once for
ordinary events and waits for the write of terminal ones (and when the backlog passes
`HIGH_WATER`), so a run's end is durable before its executor moves on, and an
unreachable database reaches the executor (`StoreUnavailable`) instead of piling up. A
batch that cannot be written is dropped (logged): followers see the gap and fall back to
a `run.snapshot`.

One run's event must not cost the others theirs: each event is encoded when it is
published (`event_json`: an event the database cannot hold, a lone surrogate or a NUL,
fails its publisher, whose run then ends failed as on any error), and a batch the
database refuses for anything but the connection is written again one run per
statement, so only the offending run's events are dropped and only its waiters fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from app.coordination.base import TERMINAL_EVENTS, LeaseRelease, RunEvent, RunRecord
from app.coordination.sql_clock import SqlClock
from app.coordination.sql_event_batch import EventBatch, dropped, event_json, refused
from app.coordination.sql_listen import EVENTS_CHANNEL
from app.coordination.sql_locks import FREE_SINCE, RELEASED
from app.coordination.sql_run_create import CREATE_WITH_EVENT, creation_args
from app.errors import StoreUnavailable
from app.stores.sql_driver import ASYNC_COMMIT, WarmStatement
from app.stores.sql_engine import unavailable_on_connection_errors

log = logging.getLogger("parley.coordination.sql")

HIGH_WATER = 1000
# How long the writer waits, after an ordinary event woke it, for more to join its batch.
# A sequential non-streamed turn publishes `message.created`, `message.delta` and
# `message.completed` within a few ms and then its terminal event, which is awaited and
# ends the wait at once: the whole turn's events are one statement instead of three
# (three round trips). Only followers on other instances (woken by the statement's
# `pg_notify`) see events this much later; this instance's follow in memory
# (`LocalFanout`), and terminal events are written as soon as they are published.
LINGER_S = 0.005


# A batch of events in one statement (so one round trip in autocommit, and atomic): the
# events, the trimmed runs' old events deleted (the DELETE does not see the rows this
# statement inserts: events below a run's new first seq are left out of the INSERT), each
# run's `last_seq` / `first_seq` (and the events' retention, after a terminal event; and
# its finished record, given with its terminal event by `end`, or its live record, given
# with an event by `publish_with_record`), the turn leases ended with their runs released
# (`end`'s `release`: as `SqlLeaseBackend.release`; the conversations whose row was still
# the lease's come back), then one `pg_notify` per run, delivered at the statement's
# COMMIT. A batch without a terminal event, an end or a release commits asynchronously
# (`_WRITE_EVENTS`, `sql_driver.ASYNC_COMMIT`): events before a run's terminal one are not
# its outcome (a follower missing some after a server crash gets a `run.snapshot`, as
# after a dropped batch), and the terminal event's batch, a synchronous commit, flushes
# them first.
_WRITE_BATCH = """
    WITH inserted AS (
        INSERT INTO run_events (run_id, seq, type, data)
        SELECT e.run_id, e.seq, e.type, CAST(e.data AS jsonb)
        FROM unnest(
            CAST($1 AS text[]), CAST($2 AS bigint[]),
            CAST($3 AS text[]), CAST($4 AS text[])
        ) AS e(run_id, seq, type, data)
    ), runs AS (
        SELECT * FROM unnest(
            CAST($5 AS text[]), CAST($6 AS bigint[]), CAST($7 AS bigint[]),
            CAST($8 AS boolean[]), CAST($9 AS text[]),
            CAST($10 AS text[])
        ) AS r(run_id, seq, keep, ended, end_record, live_record)
    ), trimmed AS (
        DELETE FROM run_events AS d USING runs
        WHERE d.run_id = runs.run_id AND d.seq < runs.keep
    ), bumped AS (
        UPDATE run_records AS t SET
            last_seq = GREATEST(t.last_seq, runs.seq),
            first_seq = GREATEST(t.first_seq, runs.keep),
            events_expire_at = CASE WHEN runs.ended
                THEN clock_timestamp() + CAST($11 AS interval)
                ELSE t.events_expire_at END,
            record = COALESCE(
                CAST(runs.end_record AS jsonb), CAST(runs.live_record AS jsonb), t.record
            ),
            terminal = t.terminal OR runs.end_record IS NOT NULL,
            finished_at = CASE WHEN runs.end_record IS NULL
                THEN t.finished_at ELSE clock_timestamp() END,
            expires_at = CASE WHEN runs.end_record IS NULL
                THEN t.expires_at
                ELSE clock_timestamp() + CAST($12 AS interval) END
        FROM runs WHERE t.run_id = runs.run_id
    ), released AS (
        UPDATE turn_leases AS l SET token = $16, expires_at = $17
        FROM unnest(CAST($14 AS text[]), CAST($15 AS text[])) AS f(cid, tok)
        WHERE l.conversation_id = f.cid AND l.token = f.tok
        RETURNING l.conversation_id
    )
    SELECT (SELECT array_agg(conversation_id) FROM released), pg_notify($13, runs.run_id)
    FROM runs
"""
_WRITE_EVENTS = _WRITE_BATCH.replace(
    "pg_notify($13, runs.run_id)\n", f"pg_notify($13, runs.run_id), {ASYNC_COMMIT}\n"
)


def warm_statements() -> list[WarmStatement]:
    """The writer's statements for `sql_driver.prepare_on_connect`."""
    return [WarmStatement(sql) for sql in (CREATE_WITH_EVENT, _WRITE_BATCH, _WRITE_EVENTS)]


class EventWriter:
    def __init__(
        self, sql: SqlClock, *, retention_s: float, record_retention_s: float, max_events: int
    ) -> None:
        self._sql = sql
        self._retention_s = retention_s
        self._record_retention_s = record_retention_s
        self._max_events = max_events
        self._seqs: dict[str, int] = {}  # run -> last seq given out, for runs created here
        self._firsts: dict[str, int] = {}  # run -> first seq still kept
        self._next = EventBatch()  # what the next statement writes
        # who waits for that statement: for a run's events (None: for all of them)
        self._waiters: list[tuple[str | None, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # a waiter came: stop lingering (`_linger`)
        self._task: asyncio.Task[None] | None = None

    def adopt(self, run_id: str) -> None:
        """Run `run_id` was created here: its events are numbered and written here."""
        self._seqs[run_id] = 0
        self._firsts[run_id] = 1

    def owns(self, run_id: str) -> bool:
        return run_id in self._seqs

    async def create(
        self,
        record: RunRecord,
        owner: str,
        type_: str,
        data: dict[str, Any],
        *,
        riding: tuple[str, Sequence[Any]] | None = None,
    ) -> tuple[RunEvent, Any]:
        """Create the live run `record` (owned here from now on) with its first event
        `type_` (not terminal), in one statement (`sql_run_create`). `riding`: a statement
        made `creating_with` and its own arguments, run as that one statement; its row is
        returned (else None)."""
        assert not record.run.status.terminal and type_ not in TERMINAL_EVENTS
        args = creation_args(record, owner, type_, event_json(data))
        row = None
        with unavailable_on_connection_errors():
            async with self._sql.postgres_statement() as driver:
                if riding is None:
                    await driver.execute(CREATE_WITH_EVENT, *args)
                else:
                    row = await driver.fetchrow(riding[0], *args, *riding[1])
        self._seqs[record.run.id] = 1
        self._firsts[record.run.id] = 1
        return RunEvent(seq=1, type=type_, data=data), row

    async def publish(self, run_id: str, type_: str, data: dict[str, Any]) -> RunEvent:
        return await self._publish(run_id, type_, data, event_json(data))

    async def publish_with_record(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        """The live run's new `record` (a status change: `running`) and its event `type_`
        (not terminal), written in the statement of their batch like any event."""
        assert not record.run.status.terminal and type_ not in TERMINAL_EVENTS
        text, live = event_json(data), record.model_dump_json()
        return await self._publish(record.run.id, type_, data, text, live=live)

    async def end(
        self,
        record: RunRecord,
        type_: str,
        data: dict[str, Any],
        release: LeaseRelease | None = None,
    ) -> RunEvent:
        """The run's finished record and its terminal event `type_`, written together in
        the statement of their batch (after every event published before), with its turn
        lease `release`d in it when given (`release.done` is called once the statement
        ran, or failed, or when the event or record cannot be encoded)."""
        assert record.run.status.terminal and type_ in TERMINAL_EVENTS
        try:
            text, end = event_json(data), record.model_dump_json()
        except BaseException:
            if release is not None:
                release.done(None)  # released the usual way
            raise
        if release is not None:
            self._next.releases[record.run.id] = release
        return await self._publish(record.run.id, type_, data, text, end=end)

    async def _publish(
        self,
        run_id: str,
        type_: str,
        data: dict[str, Any],
        text: str,
        *,
        end: str | None = None,
        live: str | None = None,
    ) -> RunEvent:
        seq = self._seqs[run_id] + 1
        self._seqs[run_id] = seq
        batch = self._next
        batch.events.append((run_id, seq, type_, text))
        if end is not None:
            batch.ends[run_id] = end
        if live is not None:
            batch.lives[run_id] = live
        terminal = type_ in TERMINAL_EVENTS
        waiter: asyncio.Future[None] | None = None
        if terminal or len(batch.events) >= HIGH_WATER:
            waiter = self._wait(run_id)
        self._start()
        if waiter is not None:
            await waiter
        if terminal:
            self._seqs.pop(run_id, None)
            self._firsts.pop(run_id, None)
        return RunEvent(seq=seq, type=type_, data=data)

    def _wait(self, run_id: str | None) -> asyncio.Future[None]:
        """A future set once the next statement wrote `run_id`'s events (None: all)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((run_id, waiter))
        self._urgent.set()
        return waiter

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="sql-run-events")
        self._wake.set()

    async def flush(self, run_id: str | None = None) -> None:
        """Wait until every event of `run_id` (None: of every run) published so far is
        written (before a run's record says it ended: a follower that sees the end must
        find its events)."""
        if self._task is None or self._task.done():
            return
        waiter = self._wait(run_id)
        self._wake.set()
        await waiter

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._linger()
            while self._next.events or self._waiters:
                batch, waiters = self._next, self._waiters
                self._next, self._waiters = EventBatch(), []
                failed = await self._write_batch(batch)
                anyone = next(iter(failed.values()), None)
                for run_id, waiter in waiters:
                    error = anyone if run_id is None else failed.get(run_id)
                    if waiter.done():
                        continue
                    if error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(error)

    async def _linger(self) -> None:
        """Up to `LINGER_S` for more events to join the batch, unless someone waits for
        it (a terminal event, a flush, the backlog at `HIGH_WATER`): then not at all."""
        if self._waiters:
            return
        self._urgent.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_S):
                await self._urgent.wait()

    async def _write_batch(self, batch: EventBatch) -> dict[str, StoreUnavailable]:
        """Write `batch`; the error of each run whose events were dropped. A batch the
        database refuses for anything but the connection goes again one run per statement:
        one run's event the database cannot take costs no other run its events. Every
        lease of `batch.releases` is done by the end (freed, or else released the usual
        way)."""
        unsettled = dict(batch.releases)
        try:
            runs = batch.runs()
            if not runs:
                return {}
            try:
                await self._write_part(batch, unsettled)
                return {}
            except Exception as exc:
                if len(runs) == 1 or not refused(exc):
                    return dropped(batch, exc)
                log.warning("a batch of %d runs was refused: %r; each alone", len(runs), exc)
            failed: dict[str, StoreUnavailable] = {}
            lost: Exception | None = None  # the connection: the rest are not tried
            for run_id in runs:
                part = batch.of_run(run_id)
                try:
                    if lost is not None:
                        raise lost
                    await self._write_part(part, unsettled)
                except Exception as exc:
                    failed.update(dropped(part, exc))
                    if not refused(exc):
                        lost = exc
            return failed
        finally:
            for release in unsettled.values():
                release.done(None)

    async def _write_part(self, part: EventBatch, unsettled: dict[str, LeaseRelease]) -> None:
        freed = await self._write(part)
        for run_id, release in part.releases.items():
            del unsettled[run_id]
            release.done(release.key in freed)

    async def _write(self, batch: EventBatch) -> set[str]:
        """The batch in one statement, run in autocommit: one round trip, atomic. The
        conversations whose lease of `batch.releases` it freed."""
        last: dict[str, int] = {}
        ended: set[str] = set()
        for run_id, seq, type_, _ in batch.events:
            last[run_id] = seq
            if type_ in TERMINAL_EVENTS:
                ended.add(run_id)
        keeps: dict[str, int] = {}  # run -> first seq kept, for the runs trimmed now
        for run_id, seq in last.items():
            first = self._firsts.get(run_id)
            if first is not None and seq - first + 1 > self._max_events:
                keeps[run_id] = seq - self._max_events // 2 + 1
        kept = [event for event in batch.events if event[1] >= keeps.get(event[0], 0)]
        durable = bool(ended or batch.ends or batch.releases)  # a run's end: synchronous
        runs = list(last)
        releases = list(batch.releases.values())
        args = (
            [event[0] for event in kept],
            [event[1] for event in kept],
            [event[2] for event in kept],
            [event[3] for event in kept],
            runs,
            [last[run_id] for run_id in runs],
            [keeps.get(run_id, 0) for run_id in runs],
            [run_id in ended for run_id in runs],
            [batch.ends.get(run_id) for run_id in runs],
            [batch.lives.get(run_id) for run_id in runs],
            timedelta(seconds=self._retention_s),
            timedelta(seconds=self._record_retention_s),
            EVENTS_CHANNEL,
            [release.key for release in releases],
            [release.value for release in releases],
            RELEASED,
            FREE_SINCE,
        )
        with unavailable_on_connection_errors():
            async with self._sql.postgres_statement() as driver:
                rows = await driver.fetch(_WRITE_BATCH if durable else _WRITE_EVENTS, *args)
        for run_id, keep in keeps.items():  # (once written: a dropped batch trimmed nothing)
            if run_id in self._firsts:
                self._firsts[run_id] = keep
        return set(rows[0][0] or ()) if rows else set()

    async def close(self) -> None:
        """Write what is pending, then stop."""
        if self._task is None:
            return
        if self._next.events:
            waiter = self._wait(None)
            self._wake.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(waiter, timeout=5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        releases, self._next.releases = self._next.releases, {}
        for release in releases.values():  # (never written)
            release.done(None)
