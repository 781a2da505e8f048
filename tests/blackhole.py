"""A loopback TCP proxy that can turn into a black hole, for partition tests.

Forwarding, it pipes bytes both ways between each accepted client and the target. After
`blackhole()`, every open connection stays open but nothing is forwarded any more (bytes
are read and dropped), and new connections are accepted and then ignored: the way a
network partition looks to a client (no refusal, no reset, just silence). After `stall()`
it stops reading what clients send (their writes back up once the socket buffers fill:
`recv_buffer` keeps those small).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class BlackholeProxy:
    def __init__(
        self, target_host: str, target_port: int, *, recv_buffer: int | None = None
    ) -> None:
        self._target = (target_host, target_port)
        self._recv_buffer = recv_buffer
        self._server: asyncio.Server | None = None
        self._silent = False
        self._stalled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self._recv_buffer is not None:  # inherited by the accepted sockets
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer)
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._accept, sock=sock)
        self.port = self._server.sockets[0].getsockname()[1]

    def blackhole(self) -> None:
        self._silent = True

    def stall(self) -> None:
        self._stalled = True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self._silent:
            await self._drain_forever(reader)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        self._spawn(self._pipe(up_reader, writer))
        await self._pipe(reader, up_writer, from_client=True)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        from_client: bool = False,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if from_client and self._stalled:
                    await asyncio.Event().wait()  # never reads from the client again
                if self._silent:
                    continue  # dropped: the partition
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        if not self._silent:
            writer.close()

    @staticmethod
    async def _drain_forever(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass


@asynccontextmanager
async def blackhole_proxy(
    host: str, port: int, *, recv_buffer: int | None = None
) -> AsyncIterator[BlackholeProxy]:
    proxy = BlackholeProxy(host, port, recv_buffer=recv_buffer)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
