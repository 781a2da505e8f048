"""The Redis coordinator: turn locks, idempotency records and run event logs shared by
every instance pointing at the same Redis (DESIGN §4/§5, issue "Redis state, many
instances, idempotent sends").

The pieces live in `redis_locks.py`, `redis_idempotency.py` and `redis_runs.py`; clients
and error translation in `redis_client.py`. Key space (every key of one conversation or
run shares a hash tag, so each script touches a single cluster slot):

    parley:lock:{<conversation_id>}           <token>:<run_id>, PX lease
    parley:lockseq:{<conversation_id>}        the lock's acquisition counter (stamps)
    parley:idem:{<scope>}:<key>               idempotency record JSON, PX ttl
    parley:run:{<run_id>}:events | :meta | :record
    parley:cancel                             Pub/Sub channel of cancellation requests

(`parley:` is the default prefix; the URL's `?prefix=` replaces it, as for the store.)
"""

from __future__ import annotations

from app.coordination.base import Coordinator
from app.coordination.lease_backend import LeaseTiming
from app.coordination.redis_client import RedisClients, RedisOptions, connect, unavailable
from app.coordination.redis_idempotency import RedisIdempotencyKeys
from app.coordination.redis_locks import RedisTurnLocks
from app.coordination.redis_runs import RedisRunLog


class RedisCoordinator(Coordinator):
    """Owns the clients; `close()` stops lease renewals and closes the connections."""

    def __init__(
        self,
        clients: RedisClients,
        locks: RedisTurnLocks,
        idempotency: RedisIdempotencyKeys,
        runs: RedisRunLog,
    ) -> None:
        super().__init__(locks, idempotency, runs)
        self._clients = clients
        self._locks = locks

    async def ping(self) -> None:
        with unavailable():
            await self._clients.command.ping()

    async def close(self) -> None:
        await self._locks.close()
        await self._clients.aclose()


def redis_coordinator(
    url: str,
    *,
    event_retention_s: float,
    options: RedisOptions | None = None,
    timing: LeaseTiming | None = None,
) -> RedisCoordinator:
    """A coordinator on the Redis at `url` (redis://, rediss://, redis+cluster://,
    rediss+cluster://). Builds clients only: nothing connects until first use, so a
    Redis that is down at start-up gives 503s, not a failed start."""
    options = options or RedisOptions()
    clients = connect(url, options)
    prefix = clients.prefix
    locks = RedisTurnLocks(clients.command, timing, prefix=prefix)
    runs = RedisRunLog(
        clients.command,
        prefix=prefix,
        blocking_client=clients.blocking,
        retention_s=event_retention_s,
        block_s=options.block_s,
        max_blocking_reads=options.max_blocking_reads,
    )
    idempotency = RedisIdempotencyKeys(clients.command, prefix=prefix)
    return RedisCoordinator(clients, locks, idempotency, runs)
