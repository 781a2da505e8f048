"""Group commit of the SQL coordinator's single-statement writes on SQLite.

SQLite takes one write transaction at a time, and through aiosqlite each transaction is
several hops to the connection's thread (`BEGIN IMMEDIATE`, the statement, `COMMIT`),
each one waiting for the event loop to come round again. With 100 streams on one loop a
hop costs milliseconds, so every turn's two record writes (the run created, the run
ended) queued behind each other and behind the store's commits: most of a streamed
turn's time before its first token (bench/streaming.py).

`WriteBatch.execute` queues a statement with its parameters; one task takes the write
lock (`SqlClock.sqlite_write`) and writes everything queued by the time it has it in one
transaction, consecutive uses of the same statement as one `executemany`, on the driver
(`app.coordination.sql_run_rows`), the whole transaction one hand-off to aiosqlite's
thread (`sql_driver.SqliteWriter`). The caller
returns once that transaction committed, exactly as if it had written alone: a batch
that fails (nothing of it was written) is written again one statement per transaction,
so each caller gets its own statement's outcome. Order is kept: statements run in the
order they were queued.

`WriteBatch.defer` queues a statement nobody waits for (a run's end on a sole instance,
`SqlRunLog.save`) without starting a batch for it: it rides with the next `execute`'s
transaction (a sequential client's next turn creating its run), or is written `linger_s`
later at the latest. One write transaction, i.e. one hand-off to aiosqlite's thread, less
per turn, and the turn's answer no longer waits for it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from app.coordination.sql_clock import SqlClock
from app.coordination.sql_run_rows import RowWrite
from app.stores.sql_engine import unavailable_on_connection_errors


@dataclass
class _Write:
    write: RowWrite
    counted: bool  # the caller wants its rowcount
    done: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


LINGER_S = 0.05  # how long a deferred write waits for a batch to ride with


class WriteBatch:
    def __init__(self, sql: SqlClock, *, linger_s: float = LINGER_S) -> None:
        self._sql = sql
        self._linger_s = linger_s
        self._queued: list[_Write] = []
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None  # a deferred write's deadline

    async def execute(self, statement: RowWrite, *, counted: bool = False) -> int:
        """Run `statement` in the next batch; its rowcount when `counted` (else -1).
        Raises what the batch's transaction raised."""
        write = _Write(statement, counted)
        self._queued.append(write)
        self._start()
        try:
            return await asyncio.shield(write.done)  # cancelling the caller leaves the batch be
        except asyncio.CancelledError:
            write.done.add_done_callback(_retrieved)  # nobody else reads its outcome
            raise

    def defer(self, statement: RowWrite) -> asyncio.Future[int]:
        """Queue `statement` for the next batch without starting one (see the module
        docstring); the future is its rowcount or the error of its transaction, for a
        caller that does not wait (it must retrieve the outcome)."""
        write = _Write(statement, counted=True)
        self._queued.append(write)
        running = self._task is not None and not self._task.done()  # (it takes this too)
        if not running and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._start)
        return write.done

    def _start(self) -> None:
        """A batch for what is queued: the drain task, unless it runs already."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="sql-write-batch")

    async def flush(self) -> None:
        """Write what is queued now, deferred writes included, and wait for it."""
        if self._queued:
            self._start()
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    async def _drain(self) -> None:
        while self._queued:
            batch: list[_Write] = []
            try:
                with unavailable_on_connection_errors():
                    async with self._sql.sqlite_write() as writer:
                        batch, self._queued = self._queued, []  # all queued while we waited
                        counts = await writer.transaction(partial(_write_all, _runs(batch)))
            except Exception as exc:
                if not batch:  # failed before it had the batch (no connection, say)
                    batch, self._queued = self._queued, []
                if len(batch) == 1:
                    _settle(batch[0], exc)
                else:  # one bad write must not fail the others: each alone, its own answer
                    for write in batch:
                        await self._alone(write)
                continue
            except BaseException:  # cancelled (the loop is closing): nobody is left waiting
                for write in [*batch, *self._queued]:
                    write.done.cancel()
                self._queued = []
                raise
            for write, count in zip(batch, counts, strict=True):
                _settle(write, count)

    async def _alone(self, write: _Write) -> None:
        try:
            with unavailable_on_connection_errors():
                async with self._sql.sqlite_write() as writer:
                    [count] = await writer.transaction(partial(_write_all, [[write]]))
        except Exception as exc:
            _settle(write, exc)
        else:
            _settle(write, count)

    async def close(self) -> None:
        """Write what is queued and wait for it (at shutdown)."""
        await self.flush()


def _retrieved(done: asyncio.Future[int]) -> None:
    if not done.cancelled():
        done.exception()


def _settle(write: _Write, outcome: int | Exception) -> None:
    if write.done.done():
        return
    if isinstance(outcome, Exception):
        write.done.set_exception(outcome)
    else:
        write.done.set_result(outcome)


def _runs(batch: list[_Write]) -> list[list[_Write]]:
    """Consecutive writes of one statement (and one `counted`), in order."""
    runs: list[list[_Write]] = []
    for write in batch:
        last = runs[-1][-1] if runs else None
        same = last is not None and last.write.sql == write.write.sql
        if same and last is not None and last.counted == write.counted:
            runs[-1].append(write)
        else:
            runs.append([write])
    return runs


def _write_all(runs: Sequence[Sequence[_Write]], conn: sqlite3.Connection) -> list[int]:
    """In aiosqlite's thread, inside the batch's transaction (`SqliteWriter.transaction`):
    each run of one statement (an `executemany` for several); each write's rowcount."""
    return [n for run in runs for n in _write_run(conn, run)]


def _write_run(conn: sqlite3.Connection, run: Sequence[_Write]) -> list[int]:
    sql = run[0].write.sql
    if len(run) == 1:
        cursor = conn.execute(sql, run[0].write.args)
        return [cursor.rowcount if run[0].counted else -1]
    cursor = conn.executemany(sql, [w.write.args for w in run])
    if not run[0].counted:
        return [-1] * len(run)
    if cursor.rowcount == len(run):  # (executemany reports the total) one row each
        return [1] * len(run)
    # some matched no row: ask each (rare; these are updates of rows by their key, so
    # running them again changes nothing)
    return [conn.execute(sql, w.write.args).rowcount for w in run]
