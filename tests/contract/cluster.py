"""Throwaway Redis servers for tests: a 3-node Redis Cluster on loopback ports, or one
plain server (for restart tests); and clean-up of a key prefix. Servers are started from
the `redis-server` / `redis-cli` binaries on PATH; when they are missing the test is
skipped locally and fails under CI=true.

Every server runs in the foreground as a child process with no persistence, in a
temporary directory, and is terminated on exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.services import service_missing

_START_TIMEOUT_S = 15.0


def _binaries() -> tuple[str, str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        service_missing("redis-server/redis-cli are not on PATH (needed for Redis Cluster tests)")
        raise AssertionError("unreachable")
    return server, cli


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, cluster_bus: bool = False) -> int:
    """A free loopback port (and, for cluster nodes, a free bus port = port + 10000)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if not cluster_bus or (port + 10000 <= 65535 and _port_is_free(port + 10000)):
            return port
    raise RuntimeError("no free port found")


def _cli(cli: str, port: int, *args: str, timeout: float = 10.0) -> str:
    done = subprocess.run(
        [cli, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout + done.stderr


def _wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class RedisServer:
    """One `redis-server` child process. With `appendonly`, every write is fsynced to an
    AOF in `directory`, so a restart (even after `kill()`) keeps the data."""

    port: int
    directory: Path
    cluster: bool = False
    appendonly: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server, cli = _binaries()
        args = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--daemonize", "no", "--dir", str(self.directory)]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]
            args += ["--cluster-config-file", str(self.directory / f"nodes-{self.port}.conf")]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: "PONG" in _cli(cli, self.port, "PING"), f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def kill(self) -> None:
        """Crash it (SIGKILL): no chance to flush anything."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextmanager
def redis_server(directory: Path, *, appendonly: bool = False) -> Iterator[RedisServer]:
    """A plain server on a free port (stop()/start() restart it on the same port)."""
    server = RedisServer(port=free_port(), directory=directory, appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class RedisClusterInfo:
    servers: tuple[RedisServer, ...]

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(s.port for s in self.servers)

    @property
    def url(self) -> str:
        """The state URL of the cluster (every node listed as a seed)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)


@contextmanager
def redis_cluster(directory: Path, nodes: int = 3) -> Iterator[RedisClusterInfo]:
    """A Redis Cluster of `nodes` primaries (no replicas) on loopback ports."""
    _, cli = _binaries()
    with ExitStack() as stack:
        servers = []
        for _ in range(nodes):
            server = RedisServer(free_port(cluster_bus=True), directory, cluster=True)
            stack.callback(server.stop)
            server.start()
            servers.append(server)
        ports = tuple(s.port for s in servers)
        nodes_args = [f"127.0.0.1:{p}" for p in ports]
        created = subprocess.run(
            [cli, "--cluster", "create", *nodes_args, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}")
        _wait(
            lambda: all("cluster_state:ok" in _cli(cli, p, "CLUSTER", "INFO") for p in ports),
            "cluster_state:ok",
        )
        # cluster_state:ok on each node is not agreement: a node may still map some slots
        # to their old owner for a moment, and a client that discovers the cluster from it
        # gets MOVED replies.
        _wait(
            lambda: len({_cli(cli, p, "CLUSTER", "SLOTS") for p in ports}) == 1,
            "every node agreeing on the slot map",
        )
        yield RedisClusterInfo(tuple(servers))


async def delete_prefixed(url: str, prefix: str) -> None:
    """Delete every key starting with `prefix` on the server at `url` (test clean-up)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        batch = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()
