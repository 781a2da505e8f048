"""`app.api.sse.encode_event` writes each run event exactly as sse-starlette's
`ServerSentEvent.encode` would (the wire format every client parses), only cheaper."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sse_starlette import ServerSentEvent

from app.api.sse import SSE_RETRY_MS, encode_event
from app.domain.run import RunEvent

PAYLOADS: list[dict[str, Any]] = [
    {"message_id": "m1", "delta": "hello"},
    # a delta's payload is put together from its two strings: every escape must match
    {"message_id": 'm"1\\', "delta": 'two\nlines "quoted" é ✓ 😀 \u2028 \x00 \x7f'},
    {"message_id": "m1", "delta": 5},  # (not a string: the general encoder)
    {"delta": "x", "message_id": "m1"},  # (other key order: the general encoder)
    {"delta": "two\nlines\r\nand a \r carriage return", "tabs": "\t"},
    {"delta": "unicode: é ✓ 😀 \u2028 \u2029 \x00 \x1f"},
    {"nested": {"a": [1, 2.5, None, True]}, "empty": {}},
]


@pytest.mark.parametrize("data", PAYLOADS)
@pytest.mark.parametrize("seq", [0, 1, 12345])
@pytest.mark.parametrize("retry", [None, SSE_RETRY_MS])
def test_encode_event_matches_sse_starlette(
    data: dict[str, Any], seq: int, retry: int | None
) -> None:
    event = RunEvent(seq=seq, type="message.delta", data=data)
    expected = ServerSentEvent(
        data=json.dumps(data, separators=(",", ":")),
        event=event.type,
        id=str(seq) if seq else None,
        retry=retry,
    ).encode()
    assert encode_event(event, retry=retry) == expected
