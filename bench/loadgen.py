"""The load generator of `bench/frameworks.py`: streaming requests over plain HTTP/1.1
keep-alive connections on asyncio streams (uvloop), lean enough that it is not what limits
the targets (its ceiling, measured against the mock upstream directly, is reported).

A request's body is read to its end (chunked or `content-length`), its SSE events parsed,
and the reply's text extracted according to the target's *dialect*:

* `openai`: `data: {chat.completion.chunk}` events, text in `choices[0].delta.content`,
  ended by `data: [DONE]` (the mock upstream, the LangChain app);
* `parley`: `event: message.delta` events, text in `delta`; the run must end with
  `run.completed`.

TTFB is PromptKit's: request sent -> the first event carrying reply text (the first
`data:` chunk there). The reply must be the profile's exact text, else the request counts
as an error. One connection per worker, as one `http.Client` per worker would keep.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

REQUEST_TIMEOUT_S = 30.0  # PromptKit's harness default (-timeout 30s)


class HttpError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class SseEvent:
    event: str
    data: str


class SseParser:
    """Incremental `text/event-stream` parser (events separated by a blank line)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[SseEvent]:
        self._buf += data.replace(b"\r\n", b"\n")
        out = []
        while b"\n\n" in self._buf:
            raw, self._buf = self._buf.split(b"\n\n", 1)
            event, lines = "message", []
            for line in raw.decode().split("\n"):
                if line.startswith("data:"):
                    lines.append(line[5:].removeprefix(" "))
                elif line.startswith("event:"):
                    event = line[6:].strip()
            if lines:
                out.append(SseEvent(event, "\n".join(lines)))
        return out


class Connection:
    """One keep-alive HTTP/1.1 connection to `host:port`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=1 << 20
            )
        return self._reader, self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        on_body: Callable[[bytes], None] | None = None,
    ) -> Response:
        """Send a request and read the whole response; body bytes go to `on_body` as they
        arrive when it is given (else they are collected into `Response.body`)."""
        reader, writer = await self._open()
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
            "accept: */*\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.close()
            raise HttpError(f"connection closed before a response: {exc!r}") from None
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        resp = Response(int(status_line.split(" ", 2)[1]), headers)
        chunks: list[bytes] = []
        sink = on_body or chunks.append
        try:
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")  # no trailers
                        break
                    data = await reader.readexactly(size + 2)
                    sink(data[:-2])
            elif "content-length" in headers:
                n = int(headers["content-length"])
                if n:
                    sink(await reader.readexactly(n))
            else:  # body until close
                while data := await reader.read(65536):
                    sink(data)
                self.close()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.close()
            raise HttpError(f"response body cut short: {exc!r}") from None
        if headers.get("connection", "").lower() == "close":
            self.close()
        resp.body = b"".join(chunks)
        return resp


@dataclass
class Dialect:
    """How a target's stream carries the reply: `text(event)` is the reply text an event
    carries (or None), `done(event)` whether the event ends the reply successfully."""

    name: str
    text: Callable[[SseEvent], str | None]
    failed: Callable[[SseEvent], str | None]


def _openai_text(e: SseEvent) -> str | None:
    if e.data == "[DONE]":
        return None
    choices = json.loads(e.data).get("choices") or [{}]
    content = (choices[0].get("delta") or {}).get("content")
    return content or None


def _parley_text(e: SseEvent) -> str | None:
    return json.loads(e.data).get("delta") if e.event == "message.delta" else None


def _parley_failed(e: SseEvent) -> str | None:
    return e.event if e.event in ("run.failed", "run.cancelled", "run.requires_action") else None


DIALECTS = {
    "openai": Dialect("openai", _openai_text, lambda e: None),
    "parley": Dialect("parley", _parley_text, _parley_failed),
}


@dataclass
class RequestRecord:
    kind: str  # "new" or "continue" (or "stateless")
    ok: bool
    ttfb_ms: float | None = None
    total_ms: float | None = None
    chunks: int = 0
    error: str | None = None


@dataclass
class TierResult:
    concurrency: int
    records: list[RequestRecord] = field(default_factory=list)
    wall_s: float = 0.0


async def stream_request(
    conn: Connection,
    path: str | Callable[[Connection], Awaitable[str]],
    body: Mapping[str, Any],
    dialect: Dialect,
    expected: str,
    kind: str,
) -> RequestRecord:
    """One benchmark request: the streaming POST to `path`; when `path` is a function,
    `await path(conn)` first gives it (e.g. by creating the conversation: timed as part of
    the request, TTFB included)."""
    t0 = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    failure: list[str] = []
    parser = SseParser()

    def on_body(data: bytes) -> None:
        nonlocal first
        for event in parser.feed(data):
            text = dialect.text(event)
            if text:
                if first is None:
                    first = time.perf_counter()
                parts.append(text)
            bad = dialect.failed(event)
            if bad:
                failure.append(f"{bad}: {event.data[:200]}")

    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            url = path if isinstance(path, str) else await path(conn)
            resp = await conn.request("POST", url, body, on_body)
    except TimeoutError:
        conn.close()
        return RequestRecord(kind, False, error=f"timeout after {REQUEST_TIMEOUT_S:g}s")
    except (HttpError, OSError) as exc:
        conn.close()
        return RequestRecord(kind, False, error=f"{type(exc).__name__}: {exc}")
    except ValueError as exc:  # bad JSON in an event
        conn.close()
        return RequestRecord(kind, False, error=f"bad event: {exc}")
    total = (time.perf_counter() - t0) * 1000
    ttfb = (first - t0) * 1000 if first is not None else None
    rec = RequestRecord(kind, True, ttfb, total, len(parts))
    reply = "".join(parts)
    if resp.status != 200:
        rec.ok, rec.error = False, f"HTTP {resp.status}"
    elif failure:
        rec.ok, rec.error = False, failure[0]
    elif reply != expected:
        rec.ok, rec.error = False, f"unexpected reply {reply[:80]!r}"
    return rec


def split_url(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"need http://host:port, got {base_url!r}")
    return parts.hostname, parts.port
