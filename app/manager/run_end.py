"""Recording the end of a run (DESIGN §5 step 6) so that it is never silently lost.

Ending a run is three writes to the coordination backend: the terminal record, freeing
the idempotency key of a run that failed or was cancelled, and the terminal event. Any of
them can fail (a Redis blip right after the commit). A failure is not swallowed: the
writes still missing are retried in the background, with backoff, until they succeed or
the process stops; meanwhile the finished record is kept here (`pending`) so that this
instance answers for the run correctly, and other instances derive the outcome from the
store (`app.manager.run_truth`). Each write is idempotent to retry except the terminal
event, whose duplicate (a publish that landed but whose reply was lost) readers ignore:
every follower stops at the first terminal event.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from app.coordination.base import Coordinator, RunRecord, TurnLease
from app.coordination.retry import Backoff

log = logging.getLogger("parley.runs")

RETRY_FIRST_S = 0.1
RETRY_CAP_S = 5.0


@dataclass
class _End:
    record: RunRecord
    event: tuple[str, dict[str, Any]]
    forget: tuple[str, str] | None  # idempotency (scope, key) to free
    lease: TurnLease | None = None  # the turn lock, released in the first attempt
    saved: bool = False
    forgotten: bool = False
    published: bool = False


class RunEndRecorder:
    def __init__(self, coordinator: Coordinator, *, attempt_s: float | None = None) -> None:
        """`attempt_s` (`PARLEY_STORE_TIMEOUT_S`) bounds each attempt: a backend that
        stops answering (black-holed, not refusing) would otherwise hold the run's end,
        and every request waiting for it, until the network gives up (a PostgreSQL
        partition held in-flight turns for as long as it lasted: 207 s seen)."""
        self._coord = coordinator
        self._attempt_s = attempt_s
        self._pending: dict[str, RunRecord] = {}
        self._retries: set[asyncio.Task[None]] = set()

    def pending(self, run_id: str) -> RunRecord | None:
        """The finished record of a run whose end is still being recorded."""
        return self._pending.get(run_id)

    async def record(
        self,
        record: RunRecord,
        event: tuple[str, dict[str, Any]],
        *,
        forget: tuple[str, str] | None,
        lease: TurnLease | None = None,
    ) -> bool:
        """Save `record`, free `forget`, publish `event`. True when all landed now; else
        the rest is retried in the background (and False). `lease`, the run's turn lock
        when it is still held (a run that does not `forget`), is released first, in the
        same step where the backend can (`RunLog.save_and_publish_releasing`); it ends
        released or left to expire whatever else fails."""
        end = _End(record, event, forget if forget is not None else None, lease)
        end.forgotten = forget is None
        try:
            await self._bounded_attempt(end)
            return True
        except Exception as exc:
            run_id = record.run.id
            log.warning(
                "run %s: recording its end (%s) failed: %r; retrying in the background",
                run_id,
                record.run.status.value,
                exc,
            )
            self._pending[run_id] = record
            task = asyncio.get_running_loop().create_task(
                self._retry(end), name=f"run-end-{run_id}"
            )
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return False

    async def _bounded_attempt(self, end: _End) -> None:
        async with asyncio.timeout(self._attempt_s):
            await self._attempt(end)

    async def _attempt(self, end: _End) -> None:
        if end.lease is not None:
            lease, end.lease = end.lease, None  # (released whatever this attempt does)
            if not end.saved and end.forgotten and not end.published:
                await self._coord.runs.save_and_publish_releasing(lease, end.record, *end.event)
                end.saved = end.published = True
                return
            await lease.release()
        if not end.saved and end.forgotten and not end.published:
            # nothing to do in between: record and event together (one step where the
            # backend can, see `RunLog.save_and_publish`)
            await self._coord.runs.save_and_publish(end.record, *end.event)
            end.saved = end.published = True
            return
        if not end.saved:
            await self._coord.runs.save(end.record)
            end.saved = True
        if not end.forgotten:
            assert end.forget is not None
            scope, key = end.forget
            await self._coord.idempotency.forget(scope, key, ref=end.record.run.id)
            end.forgotten = True
        if not end.published:
            await self._coord.runs.publish(end.record.run.id, *end.event)
            end.published = True

    async def _retry(self, end: _End) -> None:
        run_id = end.record.run.id
        backoff = Backoff(RETRY_FIRST_S, RETRY_CAP_S)
        attempts = 1
        try:
            while True:
                await asyncio.sleep(backoff.next())
                attempts += 1
                try:
                    await self._bounded_attempt(end)
                except Exception as exc:
                    log.debug("run %s: attempt %d to record its end: %r", run_id, attempts, exc)
                    continue
                log.info("run %s: end recorded after %d attempts", run_id, attempts)
                return
        finally:
            self._pending.pop(run_id, None)

    async def close(self) -> None:
        """Stop retrying (at shutdown). Runs left unrecorded are derived by the readers:
        committed ones from the store."""
        for task in list(self._retries):
            task.cancel()
        if self._retries:
            await asyncio.wait(list(self._retries), timeout=5)
