"""Redis clients of the coordinator, and what "Redis is unavailable" means.

Two clients per coordinator, so that long blocking reads never starve short commands:

* the **command client** (bounded `BlockingConnectionPool`; on a cluster, bounded per
  node): every request-path command (lock scripts, idempotency records, run records,
  publishing events) and the cancel subscriber's connection. A request that cannot get a
  connection within the socket timeout fails with `StoreUnavailable` instead of queueing
  forever;
* the **blocking client**: only `XREAD BLOCK` of run-event followers. Each follower holds
  one of its connections for at most one block period (`block_s`, ~2 s) at a time; a
  semaphore in `RedisRunLog` keeps the number of concurrent blocking reads within the
  pool (`max_blocking_reads`, default 256, i.e. 256 SSE clients following at the same
  instant per instance; more just wait their turn for a slot, they are not refused).

Timeouts are short (connect 2 s, commands 3 s) and redis-py's own retries few and fast, so
a dead server turns into `StoreUnavailable` (503) within a couple of seconds rather than
hanging a request.

URLs are spelled as for the Redis state store (`app.stores.redis_conn.parse_redis_url`):
`redis://`, `rediss://`, `redis+cluster://host:port[,host:port...]` (seeds of a Redis
Cluster; every key of one conversation or run shares a hash tag, so the scripts are
cluster-safe) and `?prefix=` (default `parley:`), which starts every coordination key and
channel, so deployments sharing a server stay apart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from redis import exceptions as rex
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from app.errors import StoreUnavailable
from app.stores.redis_conn import RedisTarget, parse_redis_url

log = logging.getLogger("parley.coordination.redis")

RedisClient: TypeAlias = "Redis | RedisCluster"

REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+cluster", "rediss+cluster"})

# "The server is not there (right now)": connection refused/reset, timeouts, a server
# still loading its dataset after a restart, a replica during failover, a cluster
# re-sharding. Everything else (a bug, a wrong type) is not hidden behind a 503.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    rex.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError
    rex.TimeoutError,
    rex.ReadOnlyError,
    rex.ClusterDownError,
    rex.TryAgainError,
    rex.SlotNotCoveredError,
    OSError,  # includes the builtin TimeoutError
)


def is_redis_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in REDIS_SCHEMES


@dataclass(frozen=True)
class RedisOptions:
    """Connection settings of the coordinator's clients (see the module docstring)."""

    connect_timeout_s: float = 2.0
    socket_timeout_s: float = 3.0
    max_connections: int = 128
    max_blocking_reads: int = 256
    block_s: float = 2.0
    retries: int = 2


@dataclass(frozen=True)
class RedisClients:
    command: RedisClient
    blocking: RedisClient
    prefix: str

    async def aclose(self) -> None:
        for client in {id(self.command): self.command, id(self.blocking): self.blocking}.values():
            try:
                if isinstance(client, Redis):
                    await client.aclose(close_connection_pool=True)
                else:
                    await client.aclose()
            except Exception:  # closing must not fail the shutdown
                log.warning("closing a Redis client failed", exc_info=True)


def connect(url: str, options: RedisOptions | None = None) -> RedisClients:
    """The command and blocking clients for `url`. Nothing connects until first use."""
    options = options or RedisOptions()
    if not is_redis_url(url):
        raise ValueError(
            f"Unsupported coordination URL {url!r}; use redis://, rediss://, "
            "redis+cluster:// or rediss+cluster://"
        )
    target = parse_redis_url(url)
    command = _client(target, options, options.socket_timeout_s, blocking=False)
    blocking = _client(target, options, options.block_s + options.socket_timeout_s, blocking=True)
    return RedisClients(command=command, blocking=blocking, prefix=target.prefix)


def _client(
    target: RedisTarget, options: RedisOptions, socket_timeout_s: float, *, blocking: bool
) -> RedisClient:
    retry = Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), retries=options.retries)
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": options.connect_timeout_s,
        "socket_timeout": socket_timeout_s,
        "retry": retry,
    }
    size = options.max_blocking_reads + 4 if blocking else options.max_connections
    if target.cluster:  # the URL names the first node; the others are extra seeds
        seeds = [ClusterNode(host, port) for host, port in target.nodes[1:]]
        return RedisCluster.from_url(
            target.url, startup_nodes=seeds, max_connections=size, **common
        )
    common["health_check_interval"] = 15
    pool: ConnectionPool
    if blocking:  # bounded by RedisRunLog's semaphore: never waits on the pool
        pool = ConnectionPool.from_url(target.url, max_connections=size, **common)
    else:
        pool = BlockingConnectionPool.from_url(
            target.url, max_connections=size, timeout=options.socket_timeout_s, **common
        )
    return Redis(connection_pool=pool)


@contextmanager
def unavailable() -> Iterator[None]:
    """Turn "Redis is not there" into `StoreUnavailable` (503) on request paths."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        log.warning("coordination backend unavailable: %r", exc)
        raise StoreUnavailable(
            f"The coordination backend (Redis) is unavailable: {type(exc).__name__}"
        ) from exc
    except rex.RedisClusterException as exc:  # no seed node answered the discovery
        if "cannot be connected" not in str(exc).lower():
            raise
        log.warning("coordination backend unavailable: %r", exc)
        raise StoreUnavailable("The coordination backend (Redis Cluster) is unavailable") from exc
