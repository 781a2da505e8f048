"""`BoundedWriteConnection` (app/stores/redis_write_timeout.py): a command whose write
cannot complete (the server stopped reading) fails with redis-py's `TimeoutError` within
the socket timeout and leaves the connection disconnected, as redis-py's own path does;
commands that can be written work as before. Real Redis behind a loopback proxy that can
stop reading from the client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from redis import exceptions as rex
from redis.asyncio import ConnectionPool, Redis

from app.stores.redis_write_timeout import BoundedWriteConnection
from tests.services import redis_url


class StallingProxy:
    """Pipes bytes both ways; after `stall()` it stops reading what the client sends."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._stalled = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        # a small receive buffer (inherited by accepted sockets): a stalled reader fills
        # the kernel's buffers after a few MB, not after the 32 MB loopback may grow to
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._accept, sock=sock)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        self._stalled.set()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        for coro in (self._pipe(reader, up_writer, stall=True), self._pipe(up_reader, writer)):
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, stall: bool = False
    ) -> None:
        try:
            while data := await src.read(65536):
                if stall and self._stalled.is_set():
                    await asyncio.Event().wait()  # never reads again
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[StallingProxy, str]]:
    url = redis_url()
    parts = urlsplit(url)
    try:
        probe = Redis.from_url(url)
        await probe.ping()
        await probe.aclose()
    except (OSError, rex.ConnectionError) as exc:
        pytest.fail(f"Redis at {url} is not reachable: {exc}")
    proxy = StallingProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.start()
    db = parts.path.lstrip("/") or "0"
    try:
        yield proxy, f"redis://127.0.0.1:{proxy.port}/{db}"
    finally:
        await proxy.close()


def client(url: str, timeout: float) -> Redis:
    pool = ConnectionPool.from_url(
        url, connection_class=BoundedWriteConnection, socket_timeout=timeout
    )
    return Redis(connection_pool=pool)


async def test_commands_that_can_be_written_work_and_keep_the_timeout(
    proxied: tuple[StallingProxy, str],
) -> None:
    _, url = proxied
    c = client(url, 0.5)
    key = f"parley-test-write-timeout:{uuid.uuid4().hex}"
    try:
        assert await c.set(key, "v") is True
        assert await c.get(key) == b"v"
        conn = await c.connection_pool.get_connection()
        assert conn.socket_timeout == 0.5  # restored after each write
        await c.connection_pool.release(conn)
    finally:
        await c.delete(key)
        await c.aclose(close_connection_pool=True)


async def test_a_write_the_server_does_not_read_times_out_and_disconnects(
    proxied: tuple[StallingProxy, str],
) -> None:
    proxy, url = proxied
    c = client(url, 0.5)
    key = f"parley-test-write-timeout:{uuid.uuid4().hex}"
    cleanup = Redis.from_url(redis_url())
    try:
        await c.ping()  # connected through the proxy
        proxy.stall()
        t = time.monotonic()
        # far more than the socket buffers hold, so the write must wait for the reader
        with pytest.raises(rex.TimeoutError, match="writing"):
            await c.set(key, b"x" * 64 * 2**20)
        assert time.monotonic() - t < 3.0
        # handed back disconnected (a reconnect would go through the stalled proxy)
        conn = c.connection_pool.get_available_connection()  # type: ignore[no-untyped-call]
        assert not conn.is_connected and conn.socket_timeout == 0.5
        await c.connection_pool.release(conn)
    finally:
        await cleanup.delete(key)
        await cleanup.aclose()
        await c.aclose(close_connection_pool=True)
