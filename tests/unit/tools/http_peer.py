"""A real HTTP server on a loopback port (uvicorn in this event loop) that records every
request and answers what the test tells it to."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn


@dataclass
class Recorded:
    method: str
    path: str
    raw_path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class HttpPeer:
    port: int
    requests: list[Recorded] = field(default_factory=list)
    handler: Callable[[Recorded], Any] = lambda r: (200, {}, b'{"ok": true}')

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        recorded = Recorded(
            method=scope["method"],
            path=scope["path"],
            raw_path=scope["raw_path"].decode(),
            query=parse_qs(scope["query_string"].decode(), keep_blank_values=True),
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=body,
        )
        self.requests.append(recorded)
        reply = self.handler(recorded)
        if inspect.isawaitable(reply):
            reply = await reply
        status, headers, payload = reply
        headers = {"content-type": "application/json", **headers}
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": payload})


@asynccontextmanager
async def http_peer() -> AsyncIterator[HttpPeer]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    peer = HttpPeer(port=sock.getsockname()[1])
    config = uvicorn.Config(peer.app, log_level="warning", lifespan="off", interface="asgi3")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, no event
        await asyncio.sleep(0.01)
    try:
        yield peer
    finally:
        server.should_exit = True
        await task
        sock.close()
