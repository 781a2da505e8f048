"""The ASGI response that writes a run's events as Server-Sent Events (DESIGN §7).

Each event is encoded once (`app.api.sse.encode_event`) and handed to `send` by the
response's stream task, which is the task the run's follower wakes when an event is
published (`app.manager.run_follow`): per event, one wake-up and one `send`, except the
terminal event, which goes with the body's end in one `send` (one transport write less). The stream
runs in a task of its own rather than in the request's, because a task resumes through
every frame of its stack, and the request's holds each middleware's. Beside it, per
response, one small task waits for the client to go away (`http.disconnect`), and one
timer writes a `: ping` comment every `ping_s` (in a task of its own, only when due).
sse-starlette, used before, ran four tasks per response under an anyio task group (the
stream, the pings, a shutdown-signal listener and the disconnect listener): ~300 µs of
CPU per response and several generator layers per event, measured.

* A client that disconnects cancels the stream where it waits (the follower's `finally`
  runs: `on_disconnect: cancel` cancels the run there); the response then ends quietly.
* On shutdown the manager drains the runs (`PARLEY_SHUTDOWN_GRACE_S`, then cancellation),
  which ends each stream with its run's terminal event; what is still open later is cut by
  `OpenStreams` (the stream's last chunk is written, so the client sees a clean end and
  reconnects with `Last-Event-ID`).
* `HEAD` gets the headers and an empty body; the stream is never started.
* A follow that cannot read the log past its outage allowance (`StoreUnavailable` after
  the first event, `app.manager.run_follow`) ends the body cleanly, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.api.sse import SSE_HEADERS, SSE_RETRY_MS, encode_event
from app.domain.run import TERMINAL_EVENTS, RunEvent
from app.errors import StoreUnavailable
from app.manager.open_streams import OpenStreams

log = logging.getLogger("parley.api")

PING = b": ping\r\n\r\n"
MEDIA_TYPE = "text/event-stream"


class RunEventStream(Response):
    """`first` (the follow's first event, awaited already or in flight) then `events`,
    as an SSE response (module docstring)."""

    media_type = MEDIA_TYPE

    def __init__(
        self,
        first: asyncio.Future[RunEvent],
        events: AsyncGenerator[RunEvent, None],
        *,
        ping_s: float,
        headers: Mapping[str, str],
        streams: OpenStreams,
        run_id: str,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({**headers, "Connection": "keep-alive"})
        self.run_id = run_id
        self._first = first
        self._events = events
        self._ping_s = ping_s
        self._streams = streams
        self._closed = False  # the last chunk is written, or about to be
        self._gone = False  # the client disconnected
        self._ping_task: asyncio.Task[None] | None = None
        self._ping_timer: asyncio.TimerHandle | None = None

    def frame(self, event: RunEvent, retry: int | None) -> bytes:
        """One event's bytes on the wire (a method: the benchmark time-stamps it)."""
        return encode_event(event, retry=retry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        if scope.get("method") == "HEAD":
            await self._close_events()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        loop = asyncio.get_running_loop()
        # The events are written by a task of its own, whose stack is this method's and not
        # every middleware's: a task resumes through each frame of its stack, once per event.
        stream = loop.create_task(self._stream(send), name=f"sse-{self.run_id}")
        watcher = loop.create_task(self._watch(receive, stream), name=f"sse-gone-{self.run_id}")
        self._ping_timer = loop.call_later(self._ping_s, self._ping_due, send)
        self._streams.add(stream)
        try:
            await stream  # (cancelling this request cancels the stream too)
        except asyncio.CancelledError:
            if not (stream.cancelled() and (self._gone or self._streams.cutting)):
                raise  # a cancellation of this request itself
        except StoreUnavailable as exc:  # past the follow's outage allowance (run_follow)
            log.warning(
                "run %s: its events could not be read (%s); the stream ends without its"
                " terminal event (the client reconnects with Last-Event-ID)",
                self.run_id,
                exc,
            )
        finally:
            self._streams.discard(stream)
            watcher.cancel()
            self._stop_pings()
            await self._close_events()
        if not self._gone and not self._closed:  # cut at shutdown: end the body cleanly
            self._closed = True
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, send: Send) -> None:
        try:
            head = await self._first
        except StopAsyncIteration:
            head = None
        if head is not None:
            if await self._write(send, head, SSE_RETRY_MS):
                return
            async for event in self._events:
                if await self._write(send, event, None):
                    return
        self._end_of_body()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, send: Send, event: RunEvent, retry: int | None) -> bool:
        """Send one event; True when it was the terminal one, which ends the stream (no event
        follows it, DESIGN §7) and so goes out with the body's last chunk: one transport
        write instead of two (each costs a system call, the biggest part of an event's
        CPU)."""
        if event.type not in TERMINAL_EVENTS:
            await send(_chunk(self.frame(event, retry)))
            return False
        self._end_of_body()
        body = self.frame(event, retry)
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return True

    def _end_of_body(self) -> None:
        self._closed = True
        self._stop_pings()  # (a ping waiting for the socket must not come after the end)

    async def _close_events(self) -> None:
        """Stop reading: the first read cancelled (and awaited, or the generator would still
        be running), then the generator closed (its `finally` runs now if it has not yet)."""
        if not self._first.done():
            self._first.cancel()
            await asyncio.gather(self._first, return_exceptions=True)
        await self._events.aclose()

    async def _watch(self, receive: Receive, stream: asyncio.Task[Any]) -> None:
        """Cancel the stream when the client goes away."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
        if not self._closed:
            self._gone = True
            stream.cancel()

    def _ping_due(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        if self._ping_task is None or self._ping_task.done():  # (else the last one waits)
            self._ping_task = loop.create_task(_ping(send))
        self._ping_timer = loop.call_later(self._ping_s, self._ping_due, send)

    def _stop_pings(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        if self._ping_task is not None:
            self._ping_task.cancel()


async def event_stream(
    events: AsyncGenerator[RunEvent, None],
    *,
    ping_s: float,
    run_id: str,
    streams: OpenStreams,
    first_wait_s: float,
) -> RunEventStream:
    """The SSE response of `events`. Its first event is awaited here for up to
    `first_wait_s` (`PARLEY_STORE_TIMEOUT_S`; then in the stream): a follow that fails
    before yielding anything (its first read of the event log timed out, say) raises now
    and the answer is that error (503 `store_unavailable` with Retry-After), not a 200
    whose body is cut before any event."""
    first = asyncio.ensure_future(anext(events))
    await asyncio.wait([first], timeout=first_wait_s)
    if first.done() and not first.cancelled():
        error = first.exception()
        if error is not None and not isinstance(error, StopAsyncIteration):
            raise error
    return RunEventStream(
        first,
        events,
        ping_s=ping_s,
        headers={**SSE_HEADERS, "X-Run-Id": run_id},
        streams=streams,
        run_id=run_id,
    )


async def _ping(send: Send) -> None:
    await send(_chunk(PING))


def _chunk(body: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": True}
