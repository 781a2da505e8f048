"""Following a run's events with a deadline (DESIGN §7).

A follower must end even when the terminal event never reaches the log: recording the
end of a run can fail after its commit (`app.manager.run_end`), and an instance can die
mid-run. `follow_checked` reads `RunLog.follow` through a small queue fed by a task, so
that after every `recheck_s` without an event it can re-read the run's record
(`settle`, which derives the outcome from the store when the record lags behind) without
disturbing the read in flight (`_QuietWatch`: one timer per follow, not one per event).
When the settled record is terminal but the log still has no terminal event, the follow
ends with the terminal event built from the record, numbered after the last event seen
(the seq the real one gets once it is published).

A follow that already delivered events and then cannot read the log (`StoreUnavailable`:
a pool exhausted under load, a store briefly away) resumes after the last event it
delivered, with a backoff, for up to `outage_s`: the response has started, so raising
would cut the stream without its terminal event. Meanwhile the re-checks go on, so a run
whose record turns terminal still ends the stream with its terminal event. A failure before
anything was delivered is raised at once (the caller can still answer 503), and so is an
outage longer than `outage_s` (the stream ends; the client reconnects with `Last-Event-ID`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from app.coordination.base import TERMINAL_EVENTS, RunEvent, RunLog, RunRecord
from app.errors import StoreUnavailable
from app.manager.events import terminal_event

log = logging.getLogger("parley.runs")

QUEUE_SIZE = 64  # events read ahead of a slow consumer; then the reader waits
OUTAGE_S = 30.0  # how long a started follow keeps retrying an unreadable log
RETRY_FIRST_S, RETRY_MAX_S = 0.05, 1.0  # its backoff

Settle = Callable[[], Awaitable[RunRecord | None]]


def terminal_of(record: RunRecord, seq: int) -> RunEvent:
    pending = record.result.pending_tool_calls if record.result else []
    approvals = record.result.pending_approvals if record.result else []
    type_, data = terminal_event(record.run, pending, approvals)
    return RunEvent(seq=seq, type=type_, data=data)


async def follow_checked(
    runs: RunLog,
    run_id: str,
    *,
    after: int,
    recheck_s: float,
    settle: Settle,
    outage_s: float = OUTAGE_S,
) -> AsyncIterator[RunEvent]:
    """`runs.follow(run_id, after=after)`, ended by the record when the log goes silent
    for `recheck_s` and the record is terminal (see the module docstring). Errors of the
    follow (`EventsExpired`, `StoreUnavailable`) are raised as they are, except a
    `StoreUnavailable` after the first event, which is retried for up to `outage_s`."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=QUEUE_SIZE)

    async def pump() -> None:
        resume, outage_since, delay = after, 0.0, RETRY_FIRST_S
        clock = asyncio.get_running_loop().time
        while True:
            try:
                async for event in runs.follow(run_id, after=resume):
                    resume, outage_since, delay = event.seq, 0.0, RETRY_FIRST_S
                    await queue.put(("event", event))
                await queue.put(("end", None))
                return
            except StoreUnavailable as exc:
                outage_since = outage_since or clock()
                if resume == after or clock() - outage_since >= outage_s:
                    await queue.put(("error", exc))
                    return
                log.warning("run %s: reading its events failed, retrying: %s", run_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            except Exception as exc:
                await queue.put(("error", exc))
                return

    reader = asyncio.create_task(pump(), name=f"follow-{run_id}")
    watch = _QuietWatch(queue, recheck_s)
    last = after
    try:
        while True:
            kind, item = await queue.get()
            if kind == "quiet":
                record = await _quiet(settle, run_id)
                if record is not None and record.run.status.terminal:
                    yield terminal_of(record, last + 1)
                    return
                watch.arm()
                continue
            watch.heard()
            if kind == "end":
                return
            if kind == "error":
                raise item
            last = item.seq
            yield item
            if item.type in TERMINAL_EVENTS:
                return
    finally:
        watch.stop()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class _QuietWatch:
    """Puts a `("quiet", None)` item in the follower's queue once `recheck_s` passed
    without an event. One timer per follow, re-armed only when it fires (to the last
    event's time + `recheck_s`), where an `asyncio.timeout` around each `queue.get()`
    made and cancelled a timer per event."""

    def __init__(self, queue: asyncio.Queue[tuple[str, Any]], recheck_s: float) -> None:
        self._queue = queue
        self._recheck_s = recheck_s
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self.arm()

    def heard(self) -> None:
        """An item arrived: the quiet time counts from now."""
        self._last = self._loop.time()

    def arm(self) -> None:
        """Watch again from now (after a re-check)."""
        self._last = self._loop.time()
        self._schedule(self._last + self._recheck_s)

    def _schedule(self, when: float) -> None:
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        due = self._last + self._recheck_s
        if self._loop.time() < due:
            self._schedule(due)  # events came meanwhile: not quiet yet
        elif self._queue.empty():
            self._timer = None  # quiet: the follower re-checks, then `arm`s again
            self._queue.put_nowait(("quiet", None))
        else:
            self._schedule(self._loop.time() + self._recheck_s)  # items wait for the reader

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _quiet(settle: Settle, run_id: str) -> RunRecord | None:
    """A re-check that fails is not an answer: keep following, check again later."""
    try:
        return await settle()
    except Exception as exc:
        log.debug("run %s: re-checking the record failed: %r", run_id, exc)
        return None
