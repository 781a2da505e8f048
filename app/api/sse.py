"""Run events as Server-Sent Events (DESIGN §7): their frames, where a reader resumes, and
what a finished run's replay starts with (the response is `app.api.sse_response`)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from json.encoder import encode_basestring_ascii

from starlette.requests import Request

from app.domain.limits import MAX_EVENT_SEQ, capped_int
from app.domain.run import RunEvent

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Sent with the first event: how long an EventSource waits before reconnecting. A finished
# run answers a reconnect past its end with 204, which makes an EventSource stop.
SSE_RETRY_MS = 2000


def wants_stream(request: Request, stream_flag: bool | None) -> bool:
    """`stream: true`, or, when the body does not say (`stream_flag` None),
    `Accept: text/event-stream`: an explicit `"stream": false` wins over the header (outside
    tester T10: a client whose default Accept lists text/event-stream got SSE anyway). The
    header is read here, not as a FastAPI `Header` parameter: each parameter is ~40 Python
    calls of FastAPI's per-request solving, and this one is not in the OpenAPI document."""
    if stream_flag is not None:
        return stream_flag
    accept = accept_field(request)
    return accept is not None and "event-stream" in accept.lower() and accepts_sse(accept)


def accept_field(request: Request) -> str | None:
    """The `Accept` field: several field lines are one comma-separated list (RFC 9110
    §5.3), not the first line alone (review R5: `Accept: application/json` then
    `Accept: text/event-stream` answered JSON where the same list on one line streamed)."""
    lines = request.headers.getlist("accept")
    return ", ".join(lines) if lines else None


def accepts_sse(accept: str) -> bool:
    """Whether the `Accept` value names `text/event-stream` with a q above 0 (RFC 9110
    12.4.2: media types are case-insensitive, `q=0` means not acceptable). Only the type
    itself opts in: `*/*` or `text/*` do not (JSON stays the default; tester T8: it was a
    substring test, so `q=0` and `text/event-streamx` streamed, `TEXT/EVENT-STREAM` did not)."""
    for media_range in accept.split(","):
        kind, *params = media_range.split(";")
        if kind.strip().lower() != "text/event-stream":
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0  # not a weight: not an opt-in
        if q > 0:
            return True
    return False


SEP = "\r\n"  # the line separator (sse-starlette's `ServerSentEvent.DEFAULT_SEPARATOR`)
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # `json.dumps(..., separators=...)`
_DELTA_KEYS = ("message_id", "delta")


def encode_event(event: RunEvent, *, retry: int | None = None) -> bytes:
    """The SSE frame of `event`, byte for byte what sse-starlette's
    `ServerSentEvent(...).encode()` makes of it (`id:`, `event:`, one `data:` line,
    `retry:`), without its per-line regular expressions and buffer: the id is digits, the
    type a constant, and compact JSON (ASCII, control characters escaped) holds no line
    break. A delta's payload, most events of a stream, is put together from its two
    strings (`encode_basestring_ascii` is what `json.dumps` uses for a string)."""
    head = f"id: {event.seq}{SEP}" if event.seq else ""
    data = event.data
    if event.type == "message.delta" and tuple(data) == _DELTA_KEYS:
        message_id, delta = data["message_id"], data["delta"]
        if isinstance(message_id, str) and isinstance(delta, str):
            text = (
                f'{{"message_id":{encode_basestring_ascii(message_id)},'
                f'"delta":{encode_basestring_ascii(delta)}}}'
            )
        else:
            text = _COMPACT.encode(data)
    else:
        text = _COMPACT.encode(data)
    tail = f"retry: {retry}{SEP}" if retry is not None else ""
    return f"{head}event: {event.type}{SEP}data: {text}{SEP}{tail}{SEP}".encode()


async def non_empty(
    events: AsyncIterator[RunEvent],
) -> AsyncGenerator[RunEvent, None] | None:
    """`events` unchanged, or None (closed) if it ends without yielding anything. Only for
    a finished run, whose first event (if any) is immediately available."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        return None

    async def chained() -> AsyncGenerator[RunEvent, None]:
        yield first
        async for event in events:
            yield event

    return chained()


def last_event_id(header: str | None, after: int | None) -> int:
    """Where a reconnecting reader resumes: `?after=` wins over `Last-Event-ID`. The
    header is a hint (not validated): past the largest seq there can be means "after
    everything"."""
    if after is not None:
        return max(after, 0)
    if header and header.strip().isascii() and header.strip().isdigit():
        return capped_int(header.strip(), MAX_EVENT_SEQ)
    return 0
