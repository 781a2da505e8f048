"""Reading a run for a client: its events replayed and followed past what the log no
longer holds, and its end awaited on behalf of a reader that may go away first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from app.coordination.base import EventsExpired, RunEvent, RunRecord
from app.errors import RunNotFound
from app.manager.run_follow import LOST_LOG_TERMINAL_SEQ, snapshot_of, terminal_of

T = TypeVar("T")


async def unless_gone(ended: Awaitable[T], reader_gone: Awaitable[None]) -> tuple[bool, T | None]:
    """(True, what `ended` gave) if it finished first, else (False, None) once
    `reader_gone` completed first; whichever is left is cancelled. An error of `ended` is
    raised as it is."""
    end = asyncio.ensure_future(ended)
    gone = asyncio.ensure_future(reader_gone)
    try:
        await asyncio.wait((end, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not end.done():
            end.cancel()
    if end.done() and not end.cancelled():
        return True, end.result()
    return False, None


async def replay_and_follow(
    run_id: str,
    after: int,
    *,
    follow: Callable[[str, int], AsyncIterator[RunEvent]],
    settled: Callable[[str], Awaitable[RunRecord | None]],
    wait: Callable[[str], Awaitable[RunRecord]],
) -> AsyncGenerator[RunEvent, None]:
    """The run's events after `after`; a `run.snapshot` stands in for events the log no
    longer holds, and a live run is then followed on from there. Nothing at all when the
    run is finished and `after` is at or past its terminal event."""
    position = after
    run: dict[str, Any] = {"id": run_id}  # the run as its events last showed it
    sent = False  # whether this response has started (a reconnect may start past run.created)
    while True:
        try:
            async for event in follow(run_id, position):
                position = event.seq
                if isinstance(found := event.data.get("run"), dict):
                    run = found
                sent = True
                yield event
            return
        except EventsExpired as expired:
            last_seq = expired.last_seq
        record = await settled(run_id)
        if record is None:
            if not sent:  # nothing sent yet: the request answers 404
                raise RunNotFound(f"Run {run_id!r} is no longer known.")
            # erased under a reader that is behind (its conversation was deleted, review
            # R3): the stream it has started still ends with exactly one terminal event
            yield vanished(run, max(last_seq, position + 1))
            return
        if record.run.status.terminal and last_seq == 0:
            # A finished run whose log knows none of its seqs: its events went before its
            # record (SQLite keeps them in memory, lost with a restart; elsewhere they
            # expire first). Its terminal event gets the id `LOST_LOG_TERMINAL_SEQ`, past
            # any the run gave out, so a reconnect after it is told "finished" (204) like
            # any finished run's (tester T1: an EventSource replayed it forever).
            if position < LOST_LOG_TERMINAL_SEQ:
                yield snapshot_of(record, 0)  # no id: it stands for what the log lost
                yield terminal_of(record, LOST_LOG_TERMINAL_SEQ)
            return
        if record.run.status.terminal and 0 < last_seq <= position + 1:
            # seen the end already, or all but the terminal event (which the log of a
            # finished run may have dropped): no snapshot of what it has (tester T20)
            if last_seq > position:
                yield terminal_of(record, last_seq)
            return
        sent = True
        yield snapshot_of(record, last_seq)  # its id lets a reconnect resume after it
        if record.run.status.terminal or last_seq <= position:
            break  # finished, or the log gives nothing past the reader: wait for the end
        # live: the events after the snapshot are followed as they come (outside tester
        # T20: the reader waited for the end and missed them all)
        position = last_seq
    if not record.run.status.terminal:
        record = await wait(run_id)
    yield terminal_of(record, last_seq)


def vanished(run: dict[str, Any], seq: int) -> RunEvent:
    """The terminal event of a run whose record and events were erased while it was
    followed: its conversation was deleted (whatever the run did is gone with it)."""
    error = {
        "code": "conversation_not_found",
        "detail": "The run's conversation was deleted while this stream followed it.",
    }
    failed = {**run, "status": "failed", "error": error}
    return RunEvent(seq=seq, type="run.failed", data={"run": failed, "error": error})
