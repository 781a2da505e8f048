"""A mock OpenAI-compatible upstream for `bench/frameworks.py`, with the profiles of
PromptKit's framework benchmark (`benchmarks/profiles/*.yaml` there):

* `fast`: 10 content chunks, 10 ms before the first, 10 ms between consecutive chunks;
* `realistic`: 30 content chunks, 200 ms before the first, 30 ms between them.

`POST /v1/chat/completions` with `"stream": true` answers `200 text/event-stream` at once,
waits the first-chunk delay, then sends `chat.completion.chunk` objects whose deltas are
`"chunk-1 "`, `"chunk-2 "`, ... with the inter-chunk delay between consecutive ones, a
final chunk with `finish_reason: "stop"` and `data: [DONE]` (PromptKit's mock does the
same). Without `stream` it answers the whole text as one `chat.completion`. `GET /health`
and `GET /readyz` answer 200.

It is a bare HTTP/1.1 server on asyncio streams (keep-alive, chunked responses, uvloop when
available), not a web framework, so that it costs little CPU next to the targets on a
2-core machine; it listens on loopback only.

    python -m bench.mock_upstream --profile fast --port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

from bench.common import run_fast


@dataclass(frozen=True)
class Profile:
    name: str
    chunks: int
    first_chunk_delay_s: float
    inter_chunk_delay_s: float

    def reply_text(self) -> str:
        return "".join(chunk_texts(self.chunks))

    def ideal_stream_s(self) -> float:
        """The least time one stream takes: the first delay plus the gaps between chunks."""
        return self.first_chunk_delay_s + (self.chunks - 1) * self.inter_chunk_delay_s


PROFILES = {
    p.name: p
    for p in (
        Profile("fast", chunks=10, first_chunk_delay_s=0.010, inter_chunk_delay_s=0.010),
        Profile("realistic", chunks=30, first_chunk_delay_s=0.200, inter_chunk_delay_s=0.030),
    )
}


def chunk_texts(n: int) -> Iterable[str]:
    return (f"chunk-{i} " for i in range(1, n + 1))


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk of a `Transfer-Encoding: chunked` body."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def stream_events(profile: Profile, model: str) -> list[bytes]:
    """The SSE payloads of one streamed completion, in order (content chunks, stop, DONE)."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": model}
    out = [
        _sse({**base, "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]})
        for t in chunk_texts(profile.chunks)
    ]
    out.append(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    out.append(b"data: [DONE]\n\n")
    return out


class Counters:
    def __init__(self) -> None:
        self.requests = 0
        self.streams = 0
        self.open_connections = 0


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _response(status: str, body: bytes, ctype: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _serve_stream(writer: asyncio.StreamWriter, profile: Profile, model: str) -> None:
    writer.write(STREAM_HEAD)
    await writer.drain()
    events = stream_events(profile, model)
    await asyncio.sleep(profile.first_chunk_delay_s)
    for i, event in enumerate(events[: profile.chunks]):
        if i:
            await asyncio.sleep(profile.inter_chunk_delay_s)
        writer.write(_chunk(event))
        await writer.drain()
    writer.write(b"".join(_chunk(e) for e in events[profile.chunks :]) + b"0\r\n\r\n")
    await writer.drain()


async def handle_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, profile: Profile, c: Counters
) -> None:
    c.open_connections += 1
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length") or 0))
            c.requests += 1
            if method == "GET" and path in ("/health", "/healthz", "/readyz"):
                writer.write(_response("200 OK", b'{"status":"ok"}'))
            elif method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                try:
                    req = json.loads(body or b"{}")
                except ValueError:
                    writer.write(_response("400 Bad Request", b'{"error":"bad json"}'))
                else:
                    model = str(req.get("model") or "gpt-4o")
                    if req.get("stream"):
                        c.streams += 1
                        await _serve_stream(writer, profile, model)
                    else:
                        msg = {"role": "assistant", "content": profile.reply_text()}
                        choice = {"index": 0, "message": msg, "finish_reason": "stop"}
                        doc = {"id": "chatcmpl-bench", "object": "chat.completion"}
                        doc |= {"model": model, "choices": [choice]}
                        writer.write(_response("200 OK", json.dumps(doc).encode()))
            else:
                writer.write(_response("404 Not Found", b'{"error":"not found"}'))
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except ConnectionError:
        return
    finally:
        c.open_connections -= 1
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve(profile: Profile, port: int, host: str = "127.0.0.1") -> None:
    counters = Counters()
    server = await asyncio.start_server(
        lambda r, w: handle_connection(r, w, profile, counters), host, port, backlog=4096
    )
    print(f"mock upstream ({profile.name}) on http://{host}:{port}", flush=True)
    started = time.monotonic()
    async with server:
        try:
            await server.serve_forever()
        finally:
            print(
                f"served {counters.requests} requests ({counters.streams} streams) in "
                f"{time.monotonic() - started:.0f}s",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="fast")
    ap.add_argument("--port", type=int, default=8081)
    a = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        run_fast(serve(PROFILES[a.profile], a.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
