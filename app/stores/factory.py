"""`create_store(url)`: the one place a state URL becomes a `StateStore` (DESIGN §4).

Redis URLs:

* `redis://[user:password@]host[:port][/db][?prefix=parley:]` and `rediss://...` (TLS):
  one Redis server;
* `redis+cluster://[user:password@]host:port[,host:port...][?prefix=parley:]` and
  `rediss+cluster://...`: a Redis Cluster; the listed nodes are seeds, the rest of the
  cluster is discovered. (The cluster is chosen by the scheme, not by a query parameter,
  the same spelling `PARLEY_COORDINATION_URL` accepts.)

`prefix` starts every key (default `parley:`), so several deployments or test runs can
share one server.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from app.stores.base import StateStore
from app.stores.redis_conn import is_redis_url

SUPPORTED_SCHEMES = (
    "memory://",
    "sqlite+aiosqlite:///path/to/file.db",
    "postgresql+asyncpg://user:password@host:5432/db",
    "redis://host:6379/0",
    "rediss://host:6380/0",
    "redis+cluster://host1:7000,host2:7001",
)


def create_store(
    url: str,
    *,
    timeout_s: float = 5.0,
    redis_max_connections: int = 1000,
    database_pool_size: int = 10,
    database_max_overflow: int = 20,
) -> StateStore:
    """A store for `url`, not yet opened (call `await store.open()`). `timeout_s` bounds
    every call to a networked store (`PARLEY_STORE_TIMEOUT_S`): past it, StoreUnavailable.
    `redis_max_connections` sizes a Redis store's pool (`PARLEY_REDIS_MAX_CONNECTIONS`),
    `database_pool_size`/`database_max_overflow` a PostgreSQL store's
    (`PARLEY_DATABASE_POOL_SIZE`/`PARLEY_DATABASE_MAX_OVERFLOW`).

    Backends are imported lazily so that choosing one never imports another's driver.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from app.stores.memory import MemoryStore

        return MemoryStore()
    if scheme in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        from app.stores.sql import SqlStore

        return SqlStore(
            url,
            timeout_s=timeout_s,
            pool_size=database_pool_size,
            max_overflow=database_max_overflow,
        )
    if is_redis_url(url):
        from app.stores.redis import RedisStore
        from app.stores.redis_conn import ClientOptions

        return RedisStore(url, options=ClientOptions.bounded(timeout_s, redis_max_connections))
    raise ValueError(
        f"Unsupported state store URL scheme {scheme or url!r}; supported: "
        + ", ".join(SUPPORTED_SCHEMES)
    )
