"""`BoundedWriteConnection` (app/stores/redis_write_timeout.py): a command whose write
cannot complete (the server stopped reading) fails with redis-py's `TimeoutError` within
the socket timeout and leaves the connection disconnected, as redis-py's own path does;
commands that can be written work as before. Real Redis behind the loopback proxy of
`tests/blackhole.py`, stalled (it stops reading from the client)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from redis import exceptions as rex
from redis.asyncio import ConnectionPool, Redis

from app.stores.redis_write_timeout import BoundedWriteConnection
from tests.blackhole import BlackholeProxy, blackhole_proxy
from tests.services import redis_url


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[BlackholeProxy, str]]:
    url = redis_url()
    parts = urlsplit(url)
    try:
        probe = Redis.from_url(url)
        await probe.ping()
        await probe.aclose()
    except (OSError, rex.ConnectionError) as exc:
        pytest.fail(f"Redis at {url} is not reachable: {exc}")
    db = parts.path.lstrip("/") or "0"
    # a small receive buffer: a stalled reader fills the kernel's buffers after a few MB,
    # not after the 32 MB loopback may grow to
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    async with blackhole_proxy(host, port, recv_buffer=4096) as proxy:
        yield proxy, f"redis://127.0.0.1:{proxy.port}/{db}"


def client(url: str, timeout: float) -> Redis:
    pool = ConnectionPool.from_url(
        url, connection_class=BoundedWriteConnection, socket_timeout=timeout
    )
    return Redis(connection_pool=pool)


async def test_commands_that_can_be_written_work_and_keep_the_timeout(
    proxied: tuple[BlackholeProxy, str],
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
    proxied: tuple[BlackholeProxy, str],
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
