"""A sole instance's run ends written behind on SQLite (`SqlRunLog.save`; the run log's
module docstring, `app.coordination.sql_runs`, says what a sole instance keeps in memory)."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from app.coordination.base import RunRecord
from app.coordination.sql_run_rows import RunRows
from app.coordination.sql_write_batch import WriteBatch

log = logging.getLogger("parley.coordination.sql")

END_RETRY_S = 1.0  # a sole instance's run end written behind, tried again after a failure


class EndsBehind:
    """`live`: the run log's newest record of each live run created here (its `_live`,
    shared): a run's end leaves it once written. `close()` stops the retries."""

    def __init__(
        self,
        batch: WriteBatch,
        rows: RunRows,
        live: dict[str, RunRecord],
        *,
        record_retention_s: float,
    ) -> None:
        self._batch = batch
        self._rows = rows
        self._live = live
        self._record_retention_s = record_retention_s
        self._closing = False

    def write(self, record: RunRecord) -> None:
        """A sole instance on SQLite: the run's end rides with the next write transaction
        of the file, within `WriteBatch.defer`'s linger (a sequential client's next turn
        creates its run in it: one transaction less per turn, and the answer does not wait
        for it). Until it lands `live` answers with the record. Were the process to die
        first, the next one finds the run live: committed, its outcome is derived from the
        commit (`mark_lost`, `RunTruth`), else it is `instance_lost`, as for a death
        between the end and its write. A failed write is tried again every
        `END_RETRY_S` while this instance lives; one that matches no row found the run
        erased meanwhile (`erase` writes the ends first, so only a race)."""
        done = self._batch.defer(self._rows.update_end(record, self._record_retention_s))
        done.add_done_callback(partial(self._written, record))

    def _written(self, record: RunRecord, done: asyncio.Future[int]) -> None:
        run_id = record.run.id
        if done.cancelled():  # (the loop is closing)
            return
        exc = done.exception()
        pending = self._live.get(run_id) is record
        if exc is not None:
            log.warning("run %s: writing its end failed: %r; retrying", run_id, exc)
            if pending and not self._closing:
                loop = asyncio.get_running_loop()
                loop.call_later(END_RETRY_S, self._retry, record)
            return
        if pending:
            self._live.pop(run_id, None)

    def _retry(self, record: RunRecord) -> None:
        if not self._closing and self._live.get(record.run.id) is record:
            self.write(record)

    def close(self) -> None:
        self._closing = True
