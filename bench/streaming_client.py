"""The client side of `bench/streaming.py`: one streamed turn read with httpx + httpx-sse and
time-stamped per event, the conversations the streams run on, unique messages, and the CPU
of the server and of this process over a phase."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field

import httpx
from httpx_sse import aconnect_sse

from bench.common import random_text
from bench.servers import Server

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
    rec.done = rec.done or time.monotonic_ns()
    if rec.error is None and rec.terminal != "run.completed":
        rec.error = f"stream ended with {rec.terminal!r}"
    elif rec.error is None and "".join(d for _, d in rec.deltas) != f"echo: {content}":
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
    """CPU used by the server process and by this (client) process over a phase."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._s0 = server.cpu_s()
        self._w0 = server.wait_s()
        self._c0 = time.process_time()

    def done(self, wall_s: float) -> dict[str, float | None]:
        s1, w1 = self._server.cpu_s(), self._server.wait_s()
        server = (s1 - self._s0) if s1 is not None and self._s0 is not None else None
        wait = (w1 - self._w0) if w1 is not None and self._w0 is not None else None
        client = time.process_time() - self._c0
        return {
            "server_cpu_utilization": round(server / wall_s, 3) if server is not None else None,
            # Share of the wall time the server's event loop was ready to run but had no CPU.
            "server_runqueue_wait": round(wait / wall_s, 3) if wait is not None else None,
            "client_cpu_utilization": round(client / wall_s, 3),
        }
