"""`build_coordinator(settings, store)`: where instances coordinate, chosen by URL scheme.

1. `PARLEY_COORDINATION_URL` when set: `redis://`, `rediss://`, `redis+cluster://`,
   `rediss+cluster://` (or `memory://` to force in-process coordination);
2. else `PARLEY_STATE_URL` when it is a Redis URL (state and coordination share the
   server, through separate clients);
3. else, when the store is SQL (`capabilities.sql_coordination`), its database holds
   idempotency records (`SqlIdempotencyKeys`) and run records (`SqlRunLog`), so both
   survive a restart. On PostgreSQL (shared by instances) turn locks are lease rows
   (`SqlLeaseLocks`) and run events are rows followed with `LISTEN/NOTIFY`: several
   instances behind a load balancer share everything. On SQLite (one serving process
   per file, `app.stores.sqlite_owner`) turn locks and run events stay in-process;
4. else everything is in-process (`memory_coordinator`): a single instance.

Where the run event log is shared (Redis, PostgreSQL), it is wrapped in `LocalFanout`:
the events of the runs this instance executes reach its own followers (the streamed
responses) from memory, while every event is still written to the shared log.

Nothing connects here; the store must be opened first (its engine is used in case 3).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from app.coordination.base import Coordinator
from app.coordination.local_fanout import LocalFanout
from app.coordination.memory import memory_coordinator
from app.coordination.memory_locks import MemoryTurnLocks
from app.coordination.redis_client import is_redis_url
from app.settings import Settings
from app.stores.base import StateStore

log = logging.getLogger("parley.coordination")

PRIMED_CONNECTIONS = 4  # opened by the warm-up (PostgreSQL), at most the pool's size
# Connections SQL coordination on PostgreSQL holds for good: the LISTEN connection
# (`sql_listen.PgListener`), taken when the manager starts, before the warm-up
HELD_CONNECTIONS = 1
# The fewest connections (`PARLEY_DATABASE_POOL_SIZE + PARLEY_DATABASE_MAX_OVERFLOW`) it
# serves with: the held ones and one for everything else, in turn (measured: with 2,
# concurrent turns, streams, followers and a cancel all complete; with 1 nothing does)
MIN_CONNECTIONS = HELD_CONNECTIONS + 1


class SqlCoordinator(Coordinator):
    """Coordination in the SQL store's database (case 3 above); `close()` stops lease
    renewals, the run heartbeat and the listener (the engine belongs to the store)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        event_retention_s: float,
        max_retained_events: int = 10_000,
        max_records: int = 10_000,
        write_lock: asyncio.Lock | None = None,
        primed_connections: int = 1,
        call_timeout_s: float | None = None,
    ) -> None:
        """`write_lock`: the store's (`StateStore.sql_write_lock`): on SQLite the
        coordinator's write transactions queue behind the store's (`SqlClock`).
        `primed_connections`: how many pool connections `warm_up` opens on PostgreSQL
        (at most the pool's size, or it would wait for itself). `call_timeout_s`: the
        bound of each PostgreSQL driver statement (`sql_driver.call_timeout_s`)."""
        from app.coordination.sql_idempotency import SqlIdempotencyKeys
        from app.coordination.sql_locks import SqlLeaseLocks
        from app.coordination.sql_runs import SqlRunLog

        self._engine = engine
        self._primed = max(1, primed_connections)
        shared = engine.dialect.name == "postgresql"
        self._leases = SqlLeaseLocks(engine, call_timeout_s=call_timeout_s) if shared else None
        self._runs = SqlRunLog(
            engine,
            retention_s=event_retention_s,
            max_retained_events=max_retained_events,
            max_records=max_records,
            sole_instance=not shared,
            write_lock=write_lock,
            call_timeout_s=call_timeout_s,
        )
        keys = SqlIdempotencyKeys(engine, write_lock=write_lock)
        super().__init__(self._leases or MemoryTurnLocks(), keys, self._runs)

    async def ping(self) -> None:
        """A real round trip to the lease table (not just "the engine exists")."""
        import sqlalchemy as sa

        from app.stores.sql_engine import unavailable_on_connection_errors
        from app.stores.sql_tables import turn_leases

        with unavailable_on_connection_errors():
            async with self._engine.connect() as conn:
                await conn.execute(sa.select(turn_leases.c.conversation_id).limit(1))

    async def warm_up(self) -> None:
        """On PostgreSQL, also open `primed_connections` pool connections at once: a
        fresh server's first turn holds several (store, lease, run log writer) and opened
        the second one itself (~35 ms of its first run's end, measured). Each prepares
        the run log's and the leases' statements (a pooled one opened before they did not)."""
        if self._engine.dialect.name == "postgresql":

            async def hold(ready: asyncio.Barrier) -> None:
                async with self._engine.connect() as conn:
                    await self._runs.prepare(conn)
                    if self._leases is not None:
                        await self._leases.prepare(conn)
                    await ready.wait()  # all open together, so the pool keeps them

            ready = asyncio.Barrier(self._primed)
            async with asyncio.TaskGroup() as group:  # one failing frees the others' too
                for _ in range(self._primed):
                    group.create_task(hold(ready))
        await self._runs.warm_up()  # its own run log: `runs` may be wrapped (LocalFanout)

    async def close(self) -> None:
        if self._leases is not None:
            await self._leases.close()
        await self._runs.close()


def build_coordinator(settings: Settings, store: StateStore) -> Coordinator:
    retention = settings.run_event_retention_s
    url = settings.coordination_url or None
    if url is not None:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "memory":
            log.info("coordination: in-process (PARLEY_COORDINATION_URL=memory://)")
            return _memory(settings)
        if not is_redis_url(url):
            raise ValueError(
                f"Unsupported PARLEY_COORDINATION_URL scheme {scheme or url!r}; use redis://, "
                "rediss://, redis+cluster://, rediss+cluster:// or memory://"
            )
        return _fanned_out(_redis(url, settings), settings)
    if is_redis_url(settings.state_url):
        return _fanned_out(_redis(settings.state_url, settings), settings)
    if store.capabilities.sql_coordination:
        from app.stores.sql_driver import call_timeout_s as pg_call_timeout_s

        engine = store.sql_engine()
        log.info("coordination: in the %s database", engine.dialect.name)
        limit = store.connection_limit()
        if engine.dialect.name == "postgresql" and limit is not None and limit < MIN_CONNECTIONS:
            raise ValueError(
                f"PARLEY_DATABASE_POOL_SIZE + PARLEY_DATABASE_MAX_OVERFLOW is {limit}, but "
                f"coordination in PostgreSQL needs at least {MIN_CONNECTIONS} connections "
                "(one stays LISTENing for run events); raise either, or set "
                "PARLEY_COORDINATION_URL to a Redis URL"
            )
        coordinator = SqlCoordinator(
            engine,
            event_retention_s=retention,
            max_retained_events=settings.run_log_max_events,
            max_records=settings.run_records_max,
            write_lock=store.sql_write_lock(),
            primed_connections=primed_connections(settings, store),
            call_timeout_s=pg_call_timeout_s(settings.store_timeout_s),
        )
        # on SQLite the events are in process memory already (one serving process)
        shared = engine.dialect.name == "postgresql"
        return _fanned_out(coordinator, settings) if shared else coordinator
    log.info("coordination: in-process (single instance)")
    return _memory(settings)


def primed_connections(settings: Settings, store: StateStore) -> int:
    """How many connections the warm-up opens at once: at most the pool keeps, and at
    most are free beside the LISTEN connection (or it would wait for itself: with 4 of 4
    it waited for a fourth, the warm-up gave up and the three it held stayed held)."""
    limit = store.connection_limit()
    free = PRIMED_CONNECTIONS if limit is None else limit - HELD_CONNECTIONS
    return max(1, min(PRIMED_CONNECTIONS, settings.database_pool_size, free))


def _fanned_out(coordinator: Coordinator, settings: Settings) -> Coordinator:
    coordinator.runs = LocalFanout(coordinator.runs, max_events=settings.run_log_max_events)
    return coordinator


def _memory(settings: Settings) -> Coordinator:
    return memory_coordinator(
        event_retention_s=settings.run_event_retention_s,
        max_records=settings.run_records_max,
        max_keys=settings.idempotency_max_keys,
        max_retained_events=settings.run_log_max_events,
    )


def _redis(url: str, settings: Settings) -> Coordinator:
    from app.coordination.redis import redis_coordinator
    from app.coordination.redis_client import RedisOptions

    log.info("coordination: redis at %s", _redacted(url))
    options = RedisOptions.bounded(settings.store_timeout_s, settings.redis_max_connections)
    return redis_coordinator(url, event_retention_s=settings.run_event_retention_s, options=options)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
