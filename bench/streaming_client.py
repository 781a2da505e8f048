"""The client side of `bench/streaming.py`: one streamed turn read and time-stamped per
event, the conversations the streams run on, unique messages, and the CPU of the server and
of this process over a phase.

Two clients read the streams (`--client`). `lean` (the default) is the load generator of
`bench/frameworks.py` (`bench/loadgen.py`: HTTP/1.1 keep-alive on asyncio streams, one
connection per conversation, run on uvloop): ~25 µs of client CPU per event. `httpx` is
httpx + httpx-sse on the default asyncio loop, what this benchmark used before: ~110 µs per
event, so with 100 streams at 20 ms per token it takes ~0.55 of the machine's 2 cores, and
its own event loop's lag (1.5 ms p50, 12 ms p99 from frame to event, measured) is most of a
token's measured latency. Both stamp an event when their SSE parser hands it over and run the
same checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field

import httpx
from httpx_sse import aconnect_sse

from bench.common import random_text
from bench.loadgen import Connection, HttpError, SseParser, split_url
from bench.servers import Server, runqueue_wait_s

STREAM_TIMEOUT_S = 120.0

TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.requires_action"}
CREATE_BODY = {"pack_id": "general-assistant", "prompt_name": "chat"}


@dataclass
class StreamRecord:
    """One streamed turn as the client saw it (monotonic ns). `deltas` are the
    `message.delta` events (receive time, text) in order; the server coalesces text that
    arrives while it is publishing, so one event may carry several of the provider's tokens.
    """

    content: str
    sent: int
    created: int | None = None
    deltas: list[tuple[int, str]] = field(default_factory=list)
    terminal: str | None = None
    done: int | None = None
    error: str | None = None


async def one_stream(client: httpx.AsyncClient, conv_id: str, content: str) -> StreamRecord:
    """Send `content` as a streamed turn and record every event; the record's `error` says
    what was wrong (status, content type, terminal event, or a reply that is not the
    mock's `echo: <content>`)."""
    rec = StreamRecord(content=content, sent=time.monotonic_ns())
    body = {"content": content, "stream": True}
    try:
        async with aconnect_sse(
            client, "POST", f"/conversations/{conv_id}/messages", json=body
        ) as source:
            ctype = source.response.headers.get("content-type", "")
            if source.response.status_code != 200 or "text/event-stream" not in ctype:
                await source.response.aread()
                rec.error = f"{source.response.status_code} {ctype}: {source.response.text[:300]}"
                return rec
            async for sse in source.aiter_sse():
                now = time.monotonic_ns()
                if sse.event == "message.delta":
                    rec.deltas.append((now, json.loads(sse.data)["delta"]))
                elif sse.event == "message.created" and rec.created is None:
                    rec.created = now
                elif sse.event in TERMINAL:
                    rec.terminal, rec.done = sse.event, now
                    break
    except httpx.HTTPError as exc:
        rec.error = f"{type(exc).__name__}: {exc}"
    return _checked(rec)


class LeanStreams:
    """The `lean` client: streamed turns over `bench.loadgen` connections, one kept-alive
    connection per conversation (as httpx's pool ends up with 100 concurrent streams)."""

    def __init__(self, base_url: str) -> None:
        self._host, self._port = split_url(base_url)
        self._conns: dict[str, Connection] = {}

    async def one_stream(self, conv_id: str, content: str) -> StreamRecord:
        """`one_stream`'s record and checks, read with `bench.loadgen`'s parser."""
        conn = self._conns.get(conv_id)
        if conn is None:
            conn = self._conns[conv_id] = Connection(self._host, self._port)
        rec = StreamRecord(content=content, sent=time.monotonic_ns())
        parser = SseParser()

        def on_body(data: bytes) -> None:
            now = time.monotonic_ns()
            for sse in parser.feed(data):
                if rec.terminal is not None:
                    continue
                if sse.event == "message.delta":
                    rec.deltas.append((now, json.loads(sse.data)["delta"]))
                elif sse.event == "message.created" and rec.created is None:
                    rec.created = now
                elif sse.event in TERMINAL:
                    rec.terminal, rec.done = sse.event, now

        path, body = f"/conversations/{conv_id}/messages", {"content": content, "stream": True}
        try:
            async with asyncio.timeout(STREAM_TIMEOUT_S):
                resp = await conn.request("POST", path, body, on_body)
        except (TimeoutError, HttpError, OSError, ValueError) as exc:
            conn.close()
            rec.error = f"{type(exc).__name__}: {exc}"
            return _checked(rec)
        ctype = resp.headers.get("content-type", "")
        if resp.status != 200 or "text/event-stream" not in ctype:
            rec.error = f"{resp.status} {ctype}"
        return _checked(rec)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def _checked(rec: StreamRecord) -> StreamRecord:
    """The record with its `error` set when the stream did not end with `run.completed` or
    its deltas do not join to the mock's `echo: <content>`."""
    rec.done = rec.done or time.monotonic_ns()
    if rec.error is None and rec.terminal != "run.completed":
        rec.error = f"stream ended with {rec.terminal!r}"
    elif rec.error is None and "".join(d for _, d in rec.deltas) != f"echo: {rec.content}":
        rec.error = "the deltas do not join to the expected reply"
    return rec


async def create_conversations(client: httpx.AsyncClient, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = await client.post("/conversations", json={**CREATE_BODY, "user_id": f"stream-{i}"})
        if r.status_code != 201:
            raise RuntimeError(f"creating a conversation failed: {r.status_code} {r.text}")
        ids.append(r.json()["id"])
    return ids


def unique_message(rng: random.Random, tag: str, words: int) -> str:
    """`words` words starting with `tag`: the text identifies the stream on the server."""
    return f"{tag} {random_text(rng, words - 1, words - 1)}"


class CpuMeter:
    """CPU used by the server process and by this (client) process over a phase, and the
    share of the time each one's event loop waited for a CPU."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._s0 = server.cpu_s()
        self._w0 = server.wait_s()
        self._c0 = time.process_time()
        self._cw0 = runqueue_wait_s(os.getpid())

    def done(self, wall_s: float) -> dict[str, float | None]:
        s1, w1 = self._server.cpu_s(), self._server.wait_s()
        server = (s1 - self._s0) if s1 is not None and self._s0 is not None else None
        wait = (w1 - self._w0) if w1 is not None and self._w0 is not None else None
        client = time.process_time() - self._c0
        cw1 = runqueue_wait_s(os.getpid())
        client_wait = cw1 - self._cw0 if cw1 is not None and self._cw0 is not None else None
        return {
            "server_cpu_utilization": round(server / wall_s, 3) if server is not None else None,
            # Share of the wall time the server's event loop was ready to run but had no CPU.
            "server_runqueue_wait": round(wait / wall_s, 3) if wait is not None else None,
            "client_cpu_utilization": round(client / wall_s, 3),
            # The same for this process's main thread (the client's event loop): a client
            # waiting for a CPU stamps its events late.
            "client_runqueue_wait": round(client_wait / wall_s, 3)
            if client_wait is not None
            else None,
        }
