"""Helpers to serve provider wire formats through `httpx.MockTransport` (never the network).

Streams are `httpx.Response`s whose body is an async byte iterator, so tests control chunk
boundaries (mid-line, mid-JSON, mid-UTF-8, CRLF) and timing (steady drip, stall, drop).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.providers.base import LLMProvider, ProviderEvent, ProviderRequest
from tests.conftest import MOCK_RESPONSES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers"
SHARED_MOCK_RESPONSES = MOCK_RESPONSES  # ../shared relative to the repository root

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    cuts = sorted({p for p in points if 0 < p < len(data)})
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def awkward_chunks(data: bytes) -> list[bytes]:
    """Cuts inside a `data:` prefix, inside JSON, between CR and LF, and inside a
    multi-byte UTF-8 character (when the data has one)."""
    points = [3, data.find(b'"', 40) + 1, data.find(b"\n\n") + 1]
    crlf_at = data.find(b"\r\n")
    if crlf_at > 0:
        points.append(crlf_at + 1)
    for marker in ("à".encode(), "☀".encode()):
        at = data.find(marker)
        if at > 0:
            points.append(at + 1)
    return split_at(data, points)


async def drip(
    chunks: Sequence[bytes],
    *,
    delay_s: float = 0.0,
    stall_after: int | None = None,
    stall_s: float = 0.0,
    fail_after: int | None = None,
    error: Exception | None = None,
) -> AsyncIterator[bytes]:
    """Yield `chunks` with `delay_s` before each; stall or raise after chunk number N."""
    for i, chunk in enumerate(chunks):
        if delay_s:
            await asyncio.sleep(delay_s)
        yield chunk
        if stall_after is not None and i + 1 == stall_after:
            await asyncio.sleep(stall_s)
        if fail_after is not None and i + 1 == fail_after:
            raise error or httpx.RemoteProtocolError("peer closed connection")


def stream_response(
    body: AsyncIterator[bytes] | bytes,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    hdrs = {"content-type": "text/event-stream; charset=utf-8", **(headers or {})}
    return httpx.Response(status, headers=hdrs, content=body)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(
        status, headers={"content-type": "application/json", **(headers or {})}, content=content
    )


@dataclass
class Server:
    """A scripted fake server: each call pops the next response factory; requests recorded."""

    responses: list[Callable[[], httpx.Response]]
    requests: list[httpx.Request] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.responses:
            raise AssertionError("unexpected extra request")
        return self.responses.pop(0)()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))

    def body(self, n: int = 0) -> Any:
        return json.loads(self.requests[n].content)


async def run(provider: LLMProvider, request: ProviderRequest) -> list[ProviderEvent]:
    return [ev async for ev in provider.stream(request)]


def sse_frames(*docs: dict[str, Any], done: bool = True) -> bytes:
    """OpenAI-style `data:` frames (compact JSON), optionally ended by `[DONE]`."""
    out = b"".join(b"data: " + json.dumps(d).encode() + b"\n\n" for d in docs)
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk_doc(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    """A minimal `chat.completion.chunk` object."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1739390745,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
    }
