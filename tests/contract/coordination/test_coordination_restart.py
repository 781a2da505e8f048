"""A Redis restart under the coordinator: fast 503s while it is down, recovery after.

Runs its own `redis-server` (AOF, fsync always) on a free loopback port, so killing it
disturbs nobody else's tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.coordination.base import IdempotencyRecord
from app.coordination.lease_backend import LeaseTiming
from app.coordination.redis import redis_coordinator
from app.errors import StoreUnavailable
from tests.contract.cluster import RedisServer, redis_server
from tests.contract.coordination.test_coordination_runs import collect, new_record

pytestmark = pytest.mark.redis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path, appendonly=True) as server:
        yield server


async def fails_fast(call: Callable[[], Awaitable[Any]]) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await call()
    assert time.monotonic() - started < 5


async def until_received(send: Callable[[], Awaitable[None]], inbox: asyncio.Queue[str]) -> str:
    """Pub/Sub reaches only connected subscribers: send until one arrives (≤ 15 s)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(StoreUnavailable):
            await send()
        try:
            return await asyncio.wait_for(inbox.get(), timeout=0.1)
        except TimeoutError:
            continue
    raise AssertionError("nothing received")


async def test_clients_fail_fast_while_down_and_recover(own_redis: RedisServer) -> None:
    one = redis_coordinator(own_redis.url, event_retention_s=60, timing=LeaseTiming(lease_s=0.6))
    two = redis_coordinator(own_redis.url, event_retention_s=60)
    inbox: asyncio.Queue[str] = asyncio.Queue()

    async def listen() -> None:
        async for run_id in two.runs.cancel_requests():
            await inbox.put(run_id)

    listener = asyncio.create_task(listen())
    try:
        lease = await one.locks.acquire("conv", "run-0", wait_s=0)
        await one.runs.create(new_record("run-1"))
        await one.runs.publish("run-1", "run.created", {})
        assert await until_received(lambda: one.runs.request_cancel("r"), inbox) == "r"
        follower = asyncio.create_task(collect(two.runs, "run-1"))
        await asyncio.sleep(0.1)

        await asyncio.to_thread(own_redis.kill)
        record = IdempotencyRecord(fingerprint="f", ref="run-1")
        await fails_fast(lambda: one.locks.acquire("conv-2", "run-2", wait_s=0))
        await fails_fast(lambda: one.locks.acquire("conv-2", "run-2", wait_s=10))
        await fails_fast(lambda: one.locks.holder("conv"))
        await fails_fast(lambda: one.idempotency.reserve("s", "k", record, ttl_s=60))
        await fails_fast(lambda: one.idempotency.forget("s", "k", ref="run-1"))
        await fails_fast(lambda: one.runs.publish("run-1", "message.delta", {}))
        await fails_fast(lambda: one.runs.get("run-1"))
        await fails_fast(lambda: one.runs.request_cancel("run-1"))
        await fails_fast(lambda: collect(one.runs, "run-1"))
        await fails_fast(one.ping)
        await asyncio.sleep(0.7)  # renewals failing for longer than the lease
        assert lease.lost
        await lease.release()  # does not raise: the lease expires by itself
        assert not follower.done()  # followers ride out the outage

        await asyncio.to_thread(own_redis.start)
        await one.ping()
        again = await one.locks.acquire("conv", "run-3", wait_s=5)
        assert await two.locks.holder("conv") == "run-3"
        await again.release()
        assert await one.idempotency.reserve("s", "k", record, ttl_s=60) is None
        await one.runs.publish("run-1", "message.delta", {"after": "restart"})
        await one.runs.publish("run-1", "run.completed", {})
        events = await asyncio.wait_for(follower, timeout=10)
        assert [e.seq for e in events] == [1, 2, 3]
        assert await until_received(lambda: one.runs.request_cancel("r2"), inbox) == "r2"
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await one.close()
        await two.close()
