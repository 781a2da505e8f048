"""Run events as Server-Sent Events (DESIGN §7) with sse-starlette."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent

from app.domain.run import RunEvent

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Sent with the first event: how long an EventSource waits before reconnecting. A finished
# run answers a reconnect past its end with 204, which makes an EventSource stop.
SSE_RETRY_MS = 2000


def wants_stream(accept: str | None, stream_flag: bool) -> bool:
    return stream_flag or "text/event-stream" in (accept or "")


async def _frames(events: AsyncIterator[RunEvent]) -> AsyncIterator[ServerSentEvent]:
    retry: int | None = SSE_RETRY_MS
    async for event in events:
        yield ServerSentEvent(
            data=json.dumps(event.data, separators=(",", ":")),
            event=event.type,
            id=str(event.seq) if event.seq else None,
            retry=retry,
        )
        retry = None


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


def event_stream(
    events: AsyncIterator[RunEvent], *, ping_s: float, run_id: str, shutdown_grace_s: float
) -> EventSourceResponse:
    return EventSourceResponse(
        _frames(events),
        ping=ping_s,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        headers={**SSE_HEADERS, "X-Run-Id": run_id},
        shutdown_grace_period=shutdown_grace_s + DRAIN_MARGIN_S,
    )


def last_event_id(header: str | None, after: int | None) -> int:
    """Where a reconnecting reader resumes: `?after=` wins over `Last-Event-ID`."""
    if after is not None:
        return max(after, 0)
    if header and header.strip().isdigit():
        return int(header.strip())
    return 0
