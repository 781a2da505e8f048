"""Run events as Server-Sent Events (DESIGN §7) with sse-starlette."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from app.domain.run import RunEvent

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

SSE_RESPONSE: dict[str, Any] = {
    "description": "With `stream: true` or `Accept: text/event-stream`: the run's events "
    "(`id: <seq>`, `event: <type>`, JSON `data`), ending with exactly one terminal event.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def wants_stream(accept: str | None, stream_flag: bool) -> bool:
    return stream_flag or "text/event-stream" in (accept or "")


async def _frames(events: AsyncIterator[RunEvent]) -> AsyncIterator[ServerSentEvent]:
    async for event in events:
        yield ServerSentEvent(
            data=json.dumps(event.data, separators=(",", ":")),
            event=event.type,
            id=str(event.seq) if event.seq else None,
        )


def event_stream(
    events: AsyncIterator[RunEvent], *, ping_s: float, run_id: str
) -> EventSourceResponse:
    return EventSourceResponse(
        _frames(events),
        ping=ping_s,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        headers={**SSE_HEADERS, "X-Run-Id": run_id},
    )


def last_event_id(header: str | None, after: int | None) -> int:
    """Where a reconnecting reader resumes: `?after=` wins over `Last-Event-ID`."""
    if after is not None:
        return max(after, 0)
    if header and header.strip().isdigit():
        return int(header.strip())
    return 0
