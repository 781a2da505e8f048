"""`WaitingPool` (`app.stores.redis_conn`): a free connection is taken without the pool's
condition (and its timeout), while a pool at its bound still queues commands, serves
them all and never opens more connections than allowed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.stores.redis_conn import ClientOptions, WaitingPool, build_client, parse_redis_url
from tests.services import check_redis, redis_url

pytestmark = pytest.mark.redis


async def _client(max_connections: int) -> Any:
    await check_redis(redis_url())
    options = ClientOptions(max_connections=max_connections, pool_timeout_s=5.0)
    return build_client(parse_redis_url(redis_url()), options)


async def test_a_free_connection_is_taken_without_entering_the_pool_condition() -> None:
    client = await _client(4)
    pool = client.connection_pool
    assert isinstance(pool, WaitingPool)
    try:
        await client.ping()  # one connection made and returned
        entered = 0
        acquire = pool._condition.acquire

        async def counted() -> bool:
            nonlocal entered
            entered += 1
            return await acquire()

        pool._condition.acquire = counted  # type: ignore[method-assign]
        for _ in range(5):
            assert await client.ping()
        # release still notifies under the condition (once per command); taking did not
        assert entered == 5
    finally:
        await client.aclose(close_connection_pool=True)


async def test_a_pool_at_its_bound_queues_and_serves_every_command() -> None:
    client = await _client(2)
    pool = client.connection_pool
    try:
        key = "parley-test:waiting-pool"
        await client.delete(key)
        results = await asyncio.gather(*(client.incr(key) for _ in range(50)))
        assert sorted(results) == list(range(1, 51))
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 2
        await client.delete(key)
    finally:
        await client.aclose(close_connection_pool=True)
