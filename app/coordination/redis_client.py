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

Timeouts are short (`RedisOptions.bounded(PARLEY_STORE_TIMEOUT_S)`: by default connect
1.5 s, commands 3 s) and redis-py retries only refused/reset connections, few and fast, so
a dead or black-holed server turns into `StoreUnavailable` (503) within the store timeout
rather than hanging a request.

URLs are spelled as for the Redis state store (`app.stores.redis_conn.parse_redis_url`):
`redis://`, `rediss://`, `redis+cluster://host:port[,host:port...]` (seeds of a Redis
Cluster; every key of one conversation or run shares a hash tag, so the scripts are
cluster-safe) and `?prefix=` (default `parley:`), which starts every coordination key and
channel, so deployments sharing a server stay apart.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass

from redis.asyncio import Redis

from app.stores.redis_conn import (
    ClientOptions,
    RedisClient,
    RedisTarget,
    build_client,
    is_redis_url,
    parse_redis_url,
)
from app.stores.redis_conn import unavailable as _unavailable

log = logging.getLogger("parley.coordination.redis")

__all__ = ["RedisClient", "RedisClients", "RedisOptions", "connect", "is_redis_url", "unavailable"]


@dataclass(frozen=True)
class RedisOptions:
    """Connection settings of the coordinator's clients (see the module docstring)."""

    connect_timeout_s: float = 2.0
    socket_timeout_s: float = 3.0
    max_connections: int = 128
    max_blocking_reads: int = 256
    block_s: float = 2.0
    retries: int = 2  # on refused/reset connections only: a timeout is not retried

    @classmethod
    def bounded(cls, timeout_s: float, max_connections: int = 128) -> RedisOptions:
        """Options under which a command (pool wait, connect, answer) fails with
        `StoreUnavailable` within `timeout_s` (`PARLEY_STORE_TIMEOUT_S`): a connection
        taken from the pool answers within the socket timeout or is given up; a new one
        connects within the connect timeout and then answers within the rest."""
        budget = timeout_s * 0.9
        connect_s = min(2.0, budget / 3)
        return cls(
            connect_timeout_s=connect_s,
            socket_timeout_s=budget - connect_s,
            max_connections=max_connections,
        )


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
    return build_client(
        target,
        ClientOptions(
            connect_timeout_s=options.connect_timeout_s,
            socket_timeout_s=socket_timeout_s,
            retries=options.retries,
            max_connections=options.max_blocking_reads + 4 if blocking else options.max_connections,
            health_check_interval_s=15,
            # the blocking pool is bounded by RedisRunLog's semaphore: it never waits
            wait_for_connection=not blocking,
            pool_timeout_s=options.socket_timeout_s,
        ),
    )


def unavailable() -> AbstractContextManager[None]:
    """Turn "Redis is not there" into `StoreUnavailable` (503) on request paths."""
    return _unavailable("coordination backend")
