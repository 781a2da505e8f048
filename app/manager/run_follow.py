"""Following a run's events with a deadline (DESIGN §7).

A follower must end even when the terminal event never reaches the log: recording the
end of a run can fail after its commit (`app.manager.run_end`), and an instance can die
mid-run. `follow_checked` reads `RunLog.follow` in the task that consumes it (the SSE
response: an event published on this instance wakes that task and nothing else), and a
timer (`_QuietWatch`: one per follow, re-armed only when it fires) re-reads the run's
record (`settle`, which derives the outcome from the store when the record lags behind)
after every `recheck_s` without an event. The re-check runs in a small task of its own so
that the read in flight is not disturbed; when the settled record is terminal but the log
still has no terminal event, it interrupts the wait (it cancels the consumer's task while
that task waits for the log, and the follow absorbs that cancellation) and the follow ends
with the terminal event built from the record, numbered after the last event seen (the seq
the real one gets once it is published). Relaying the events through a queue fed by a
reader task, as before, cost every event one more task wake-up.

A follow that already delivered events and then cannot read the log (`StoreUnavailable`:
a pool exhausted under load, a store briefly away) resumes after the last event it
delivered, with a backoff, for up to `outage_s`: the response has started, so raising
would cut the stream without its terminal event. After each failed read the record is
settled once (on the executing instance from memory, without the store): when it is
terminal, the read is tried once more (the log may hold events the reader lacks), and a
second failure in a row ends the stream with a `run.snapshot` and the terminal event. The
re-checks go on meanwhile, so a run whose record turns terminal still ends the stream.
A failure before anything was delivered is raised at once (the caller can still answer
503), and so is an outage longer than `outage_s` (the stream ends; the client reconnects
with `Last-Event-ID`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from app.coordination.base import TERMINAL_EVENTS, RunEvent, RunLog, RunRecord
from app.errors import StoreUnavailable
from app.manager.events import dump, terminal_event

log = logging.getLogger("parley.runs")

OUTAGE_S = 30.0  # how long a started follow keeps retrying an unreadable log
RETRY_FIRST_S, RETRY_MAX_S = 0.05, 1.0  # its backoff

Settle = Callable[[], Awaitable[RunRecord | None]]
T = TypeVar("T")


# The id of a terminal event sent when the log's last seq is unknown (a finished run whose
# log lost its events, or that cannot be read): past any seq a run gives out, so a
# reconnect after it is told "finished" (204); exact in a JavaScript number (2**53 - 1).
LOST_LOG_TERMINAL_SEQ = 2**53 - 1


def snapshot_of(record: RunRecord, seq: int) -> RunEvent:
    """The run as it is now, standing for its events up to `seq` (the log's last)."""
    messages = record.result.messages if record.result else []
    data = {"run": dump(record.run), "messages": [dump(m) for m in messages]}
    return RunEvent(seq=seq, type="run.snapshot", data=data)


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
    watch = _QuietWatch(settle, run_id, recheck_s)
    last, outage_since, delay = after, 0.0, RETRY_FIRST_S
    failed_after_end = 0  # consecutive failed reads since the record was seen terminal
    clock = asyncio.get_running_loop().time
    try:
        while True:
            source = runs.follow(run_id, after=last)
            try:  # (closed below: a consumer that stops here must not leave it suspended)
                while True:
                    watch.waiter = asyncio.current_task()  # (`waiting_for`, inlined)
                    try:
                        event = await anext(source)
                    except StopAsyncIteration:
                        return
                    except asyncio.CancelledError:
                        watch.raise_if_settled()
                        raise
                    finally:
                        watch.wait_ended()
                    last, outage_since, delay = event.seq, 0.0, RETRY_FIRST_S
                    failed_after_end = 0
                    yield event
                    if event.type in TERMINAL_EVENTS:
                        return
            except StoreUnavailable as exc:
                outage_since = outage_since or clock()
                if last == after or clock() - outage_since >= outage_s:
                    raise
                # The run may have ended meanwhile: its executor knows at once (`settle`
                # answers from memory there), elsewhere the record may (tester T3). The
                # log may still hold events the reader lacks (a blip, review R11): read
                # once more; a second failure in a row ends the stream with a snapshot of
                # the record (its committed messages) and the terminal event.
                ended = await _quiet(settle, run_id)
                if ended is not None and ended.run.status.terminal:
                    failed_after_end += 1
                    if failed_after_end >= 2:
                        yield snapshot_of(ended, 0)  # no id: the log's last seq is unknown
                        yield terminal_of(ended, LOST_LOG_TERMINAL_SEQ)
                        return
                log.warning("run %s: reading its events failed, retrying: %s", run_id, exc)
                await watch.waiting_for(asyncio.sleep(delay))
                delay = min(delay * 2, RETRY_MAX_S)
            finally:
                await source.aclose()
    except _Settled as settled:
        yield terminal_of(settled.record, last + 1)
    finally:
        watch.stop()


class _Settled(Exception):
    """Raised out of a wait that a re-check ended: the run's record is terminal."""

    def __init__(self, record: RunRecord) -> None:
        super().__init__(record.run.id)
        self.record = record


class _QuietWatch:
    """Re-checks the record once `recheck_s` passed without an event while the consumer
    waits for the log (`waiting_for`), and ends that wait (`_Settled`) when the record is
    terminal. One timer per follow, re-armed only when it fires (to the last event's
    time + `recheck_s`); a re-check runs in a task of its own, so the wait it watches
    goes on undisturbed unless it is ended."""

    def __init__(self, settle: Settle, run_id: str, recheck_s: float) -> None:
        self._settle = settle
        self._run_id = run_id
        self._recheck_s = recheck_s
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._check: asyncio.Task[None] | None = None
        self.waiter: asyncio.Task[Any] | None = None  # the consumer, while it waits
        self._settled: RunRecord | None = None
        self._schedule(self._last + recheck_s)

    async def waiting_for(self, wait: Awaitable[T]) -> T:
        """`await wait` in the consumer's task; `_Settled` instead when a re-check meanwhile
        found the record terminal (the re-check cancelled this task, which is absorbed)."""
        self.waiter = asyncio.current_task()
        try:
            return await wait
        except asyncio.CancelledError:
            self.raise_if_settled()
            raise
        finally:
            self.wait_ended()

    def raise_if_settled(self) -> None:
        """In the consumer, on a cancellation of its wait: `_Settled` if it was a re-check's
        (absorbed), else nothing (the consumer itself is cancelled: the caller re-raises)."""
        settled, task = self._settled, self.waiter
        if settled is not None and task is not None and task.uncancel() == 0:
            raise _Settled(settled) from None

    def wait_ended(self) -> None:
        self.waiter = None
        self._last = self._loop.time()  # quiet time counts from the wait's end

    def _schedule(self, when: float) -> None:
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        due = self._last + self._recheck_s
        if self.waiter is None or self._loop.time() < due:
            # events came meanwhile, or the consumer is busy elsewhere (writing): not quiet
            self._schedule(max(due, self._loop.time() + self._recheck_s * 0.5))
            return
        self._check = self._loop.create_task(self._recheck(), name=f"recheck-{self._run_id}")

    async def _recheck(self) -> None:
        started = self._last
        record = await _quiet(self._settle, self._run_id)
        waiter = self.waiter
        if (
            record is not None
            and record.run.status.terminal
            and waiter is not None
            and self._last == started  # nothing was heard during the re-check
        ):
            self._settled = record
            waiter.cancel()
            return
        self._last = self._loop.time()
        self._schedule(self._last + self._recheck_s)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._check is not None and self._check is not asyncio.current_task():
            self._check.cancel()
            self._check = None


async def _quiet(settle: Settle, run_id: str) -> RunRecord | None:
    """A re-check that fails is not an answer: keep following, check again later."""
    try:
        return await settle()
    except Exception as exc:
        log.debug("run %s: re-checking the record failed: %r", run_id, exc)
        return None
