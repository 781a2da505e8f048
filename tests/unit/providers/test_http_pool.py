"""The providers' HTTP client keeps every connection it opened alive: concurrent streamed
calls beyond httpx's default of 20 kept-alive connections do not reconnect next time."""

from __future__ import annotations

import asyncio

from app.providers.transport import provider_http_client

CONCURRENT = 40


async def test_a_second_wave_of_concurrent_calls_reuses_every_connection() -> None:
    accepted = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(0.05)  # slow enough that every call needs a connection
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = provider_http_client(max_connections=100)
    try:
        for _ in range(2):
            replies = await asyncio.gather(
                *(client.get(f"http://127.0.0.1:{port}/") for _ in range(CONCURRENT))
            )
            assert [r.text for r in replies] == ["ok"] * CONCURRENT
        assert accepted == CONCURRENT  # httpx's default limits: 40 + 20 reconnects
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_calls_beyond_the_limit_wait_for_a_connection() -> None:
    accepted = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(0.01)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = provider_http_client(max_connections=3)
    try:
        replies = await asyncio.gather(
            *(client.get(f"http://127.0.0.1:{port}/") for _ in range(12))
        )
        assert [r.status_code for r in replies] == [200] * 12
        assert accepted == 3
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
