"""Run events as Server-Sent Events (DESIGN §7) with sse-starlette."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.types import Message, Send

from app.domain.limits import MAX_EVENT_SEQ
from app.domain.run import RunEvent

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Sent with the first event: how long an EventSource waits before reconnecting. A finished
# run answers a reconnect past its end with 204, which makes an EventSource stop.
SSE_RETRY_MS = 2000


def wants_stream(request: Request, stream_flag: bool) -> bool:
    """`stream: true`, or `Accept: text/event-stream`. The header is read here, not as a
    FastAPI `Header` parameter: each parameter is ~40 Python calls of FastAPI's
    per-request solving, and this one is not in the OpenAPI document anyway."""
    return stream_flag or "text/event-stream" in request.headers.get("accept", "")


SEP = "\r\n"  # sse-starlette's line separator (`ServerSentEvent.DEFAULT_SEPARATOR`)


def encode_event(event: RunEvent, *, retry: int | None = None) -> bytes:
    """The SSE frame of `event`, byte for byte what `ServerSentEvent(...).encode()` makes
    of it (`id:`, `event:`, one `data:` line, `retry:`), without its per-line regular
    expressions and buffer: the id is digits, the type a constant, and compact JSON
    (ASCII, control characters escaped) holds no line break."""
    head = f"id: {event.seq}{SEP}" if event.seq else ""
    data = json.dumps(event.data, separators=(",", ":"))
    tail = f"retry: {retry}{SEP}" if retry is not None else ""
    return f"{head}event: {event.type}{SEP}data: {data}{SEP}{tail}{SEP}".encode()


async def _frames(events: AsyncIterator[RunEvent]) -> AsyncIterator[bytes]:
    retry: int | None = SSE_RETRY_MS
    async for event in events:
        yield encode_event(event, retry=retry)
        retry = None


class RunEventResponse(EventSourceResponse):
    """sse-starlette's response, each send made directly when no send timeout is set:
    the library wraps every send in an anyio cancel scope (`move_on_after(None)`), a few
    microseconds and task look-ups per event for a deadline that never comes; with 100
    streams of 50 events/s that is a noticeable part of the event loop's time."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


async def non_empty(events: AsyncIterator[RunEvent]) -> AsyncIterator[RunEvent] | None:
    """`events` unchanged, or None (closed) if it ends without yielding anything. Only for
    a finished run, whose first event (if any) is immediately available."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        return None

    async def chained() -> AsyncIterator[RunEvent]:
        yield first
        async for event in events:
            yield event

    return chained()


# On a shutdown signal sse-starlette would cut every stream at once. The manager drains
# instead (`PARLEY_SHUTDOWN_GRACE_S`, then cancellation), which ends each stream with its
# run's terminal event; the library cuts only what is still open this long after it.
DRAIN_MARGIN_S = 10.0


async def _first_awaited(events: AsyncIterator[RunEvent], wait_s: float) -> AsyncIterator[RunEvent]:
    """`events`, its first event awaited here for up to `wait_s` (then in the stream). A
    follow that fails before yielding anything (its first read of the event log timed out,
    say) raises now and the answer is that error (503 `store_unavailable` with
    Retry-After), not a 200 whose body is cut before any event."""
    first = asyncio.ensure_future(anext(events))
    await asyncio.wait([first], timeout=wait_s)
    if first.done() and not first.cancelled():
        error = first.exception()
        if error is not None and not isinstance(error, StopAsyncIteration):
            raise error

    async def chained() -> AsyncIterator[RunEvent]:
        try:
            head = await first
        except StopAsyncIteration:
            return
        yield head
        async for event in events:
            yield event

    return chained()


async def event_stream(
    events: AsyncIterator[RunEvent],
    *,
    ping_s: float,
    run_id: str,
    shutdown_grace_s: float,
    first_wait_s: float,
) -> EventSourceResponse:
    """The SSE response of `events`; errors before the first event are raised (see
    `_first_awaited`, `first_wait_s` is `PARLEY_STORE_TIMEOUT_S`)."""
    return RunEventResponse(
        _frames(await _first_awaited(events, first_wait_s)),
        ping=ping_s,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        headers={**SSE_HEADERS, "X-Run-Id": run_id},
        shutdown_grace_period=shutdown_grace_s + DRAIN_MARGIN_S,
    )


def last_event_id(header: str | None, after: int | None) -> int:
    """Where a reconnecting reader resumes: `?after=` wins over `Last-Event-ID`. The
    header is a hint (not validated): past the largest seq there can be means "after
    everything"."""
    if after is not None:
        return max(after, 0)
    if header and header.strip().isascii() and header.strip().isdigit():
        return min(int(header.strip()), MAX_EVENT_SEQ)
    return 0
