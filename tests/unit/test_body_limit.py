"""`BodyLimitMiddleware` counts the body unless a sane Content-Length is within the limit: a
negative one (no HTTP/1.1 server passes it, an HTTP/2 server might) is counted (review F6)."""

from __future__ import annotations

from typing import Any

import pytest

from app.api.body_limit import BodyLimitMiddleware
from app.errors import MessageTooLarge


async def _call(headers: list[tuple[bytes, bytes]], chunks: int) -> tuple[int, int]:
    """(status sent, body bytes the app read) for `chunks` chunks of 1,000 bytes."""
    read = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal read
        while True:
            message = await receive()
            read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = iter(
        [
            {"type": "http.request", "body": b"x" * 1000, "more_body": i < chunks - 1}
            for i in range(chunks)
        ]
    )
    statuses: list[int] = []

    async def receive() -> Any:
        return next(sent)

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {"type": "http", "method": "POST", "path": "/conversations/c/x", "headers": headers}
    await BodyLimitMiddleware(app, max_bytes=5000)(scope, receive, send)
    return statuses[0], read


async def test_a_negative_content_length_is_counted_like_none() -> None:
    for headers in ([(b"content-length", b"-5")], []):  # (the handler answers it 413)
        with pytest.raises(MessageTooLarge):
            await _call(headers, chunks=10)
    assert await _call([(b"content-length", b"3000")], chunks=3) == (200, 3000)
