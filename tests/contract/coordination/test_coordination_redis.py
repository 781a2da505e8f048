"""Redis specifics beyond the shared contract: key layout and expiries, many followers
through the coordinator's bounded blocking-read pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from app.coordination.base import IdempotencyRecord
from app.coordination.redis import RedisCoordinator, redis_coordinator
from app.coordination.redis_client import RedisClient, RedisOptions, connect
from app.coordination.redis_runs import RedisRunLog
from app.domain import RunStatus
from tests.contract.coordination.test_coordination_runs import collect, new_record, publish_run

from .conftest import fresh_redis

pytestmark = pytest.mark.redis


@dataclass(frozen=True)
class Target:
    url: str  # db 14 with this test's key prefix
    prefix: str
    admin: RedisClient


@pytest_asyncio.fixture
async def target() -> AsyncIterator[Target]:
    async with AsyncExitStack() as stack:
        url = await fresh_redis(stack)
        clients = connect(url)
        stack.push_async_callback(clients.aclose)
        yield Target(url, clients.prefix, clients.command)


def coordinator(target: Target) -> RedisCoordinator:
    return redis_coordinator(target.url, event_retention_s=60)


async def test_key_layout_and_expiries(target: Target) -> None:
    coord = coordinator(target)
    try:
        lease = await coord.locks.acquire("conv-1", "run-1", wait_s=0)
        admin, prefix = target.admin, target.prefix
        value = await admin.get(f"{prefix}lock:{{conv-1}}")
        assert isinstance(value, str) and value.endswith(":run-1")
        assert 0 < await admin.pttl(f"{prefix}lock:{{conv-1}}") <= 10_000
        await lease.release()
        assert await admin.exists(f"{prefix}lock:{{conv-1}}") == 0

        record = IdempotencyRecord(fingerprint="f", ref="run-1")
        await coord.idempotency.reserve("run:conv-1", "key-1", record, ttl_s=30)
        assert 25_000 < await admin.pttl(f"{prefix}idem:{{run:conv-1}}:key-1") <= 30_000

        await coord.runs.create(new_record("run-1"))
        await coord.runs.publish("run-1", "run.created", {})
        base = f"{prefix}run:{{run-1}}"
        for suffix in (":events", ":meta", ":record"):  # a live run: the long live TTL
            assert await admin.pttl(base + suffix) > 3_600_000
        assert await admin.hget(base + ":meta", "seq") == "1"
        entries = await admin.xrange(base + ":events")
        assert entries == [("1-1", {"type": "run.created", "data": "{}"})]

        await coord.runs.publish("run-1", "run.completed", {})
        assert 55_000 < await admin.pttl(base + ":events") <= 60_000  # retention
        assert await admin.pttl(base + ":record") > 3_600_000  # the record outlives events
        assert await admin.hget(base + ":meta", "done") == "2"
        await coord.runs.save(new_record("run-1"))  # saving keeps the expiry
        assert await admin.pttl(base + ":record") <= 86_400_000
    finally:
        await coord.close()


async def test_a_lost_lock_counter_restarts_above_every_stamp_it_gave(target: Target) -> None:
    """`lockseq` bumps with every acquisition and outlives releases; if Redis loses it
    (expiry, eviction) it restarts from its clock, so a stamp remembered before can never
    match the next lease by chance (`LeaseLocks`, *stamps*)."""
    coord = coordinator(target)
    seq = f"{target.prefix}lockseq:{{conv-1}}"
    try:
        await (await coord.locks.acquire("conv-1", "run-1", wait_s=0)).release()
        first = int(await target.admin.get(seq) or 0)
        assert first > 1_700_000_000 * 10**6, "a new counter starts from the clock in µs"
        assert 6 * 86_400_000 < await target.admin.pttl(seq) <= 7 * 86_400_000
        assert coord.locks.stamp("conv-1") == first
        lease = await coord.locks.acquire("conv-1", "run-2", wait_s=0)
        assert lease.stamp_before == first and await target.admin.get(seq) == str(first + 1)
        await lease.release()
        seen = coord.locks.stamp("conv-1")
        assert seen == first + 1
        await target.admin.delete(seq)
        lease = await coord.locks.acquire("conv-1", "run-3", wait_s=0)
        assert lease.stamp_before is not None and lease.stamp_before > seen + 1
        await lease.release()
    finally:
        await coord.close()


async def test_a_hundred_followers(target: Target) -> None:
    """Fan-out correctness, not latency: the hundred followers open a hundred blocking
    connections at once, which on a loaded two-core CI machine took longer than the default
    2 s connect timeout (redis TimeoutError, seen under pytest-xdist); roomy timeouts here."""
    coord = redis_coordinator(
        target.url,
        event_retention_s=60,
        options=RedisOptions(connect_timeout_s=10.0, socket_timeout_s=10.0),
    )
    try:
        await coord.runs.create(new_record("run-1"))
        followers = [asyncio.create_task(collect(coord.runs, "run-1")) for _ in range(100)]
        await asyncio.sleep(0.2)
        await publish_run(coord.runs, "run-1", 10)
        results = await asyncio.wait_for(asyncio.gather(*followers), timeout=30)
        assert all([e.seq for e in events] == list(range(1, 11)) for events in results)
    finally:
        await coord.close()


async def test_followers_beyond_the_blocking_pool_wait_their_turn(target: Target) -> None:
    clients = connect(target.url, RedisOptions(max_blocking_reads=3))
    runs = RedisRunLog(
        clients.command,
        prefix=clients.prefix,
        blocking_client=clients.blocking,
        block_s=0.1,
        max_blocking_reads=3,
    )
    try:
        await runs.create(new_record("run-1"))
        followers = [asyncio.create_task(collect(runs, "run-1")) for _ in range(12)]
        await asyncio.sleep(0.2)
        await publish_run(runs, "run-1", 5)
        results = await asyncio.wait_for(asyncio.gather(*followers), timeout=10)
        assert all([e.seq for e in events] == [1, 2, 3, 4, 5] for events in results)
    finally:
        await clients.aclose()


async def test_following_a_run_about_to_be_created_waits_for_it(target: Target) -> None:
    """An idempotent retry on another instance may follow before the run is created."""
    coord = coordinator(target)
    try:
        follower = asyncio.create_task(collect(coord.runs, "run-1"))
        await asyncio.sleep(0.3)
        await coord.runs.create(new_record("run-1"))
        await publish_run(coord.runs, "run-1", 3)
        events = await asyncio.wait_for(follower, timeout=5)
        assert [e.seq for e in events] == [1, 2, 3]
    finally:
        await coord.close()


async def test_a_runs_creation_and_end_are_one_command_each(target: Target) -> None:
    clients = connect(target.url)
    runs = RedisRunLog(clients.command, prefix=clients.prefix, retention_s=60)
    commands: list[str] = []
    original = clients.command.execute_command

    async def counted(*args: Any, **kwargs: Any) -> Any:
        commands.append(str(args[0]))
        return await original(*args, **kwargs)

    try:
        for run_id in ("run-0", "run-1"):  # the first run loads the scripts
            commands.clear()
            clients.command.execute_command = counted  # type: ignore[method-assign]
            record = new_record(run_id)
            await runs.create_and_publish(record, "run.created", {})
            done = record.model_copy(
                update={"run": record.run.model_copy(update={"status": RunStatus.completed})}
            )
            await runs.save_and_publish(done, "run.completed", {})
            clients.command.execute_command = original  # type: ignore[method-assign]
        assert commands == ["EVALSHA", "EVALSHA"]
        base = f"{clients.prefix}run:{{run-1}}"
        assert await runs.get("run-1") == done
        assert 55_000 < await target.admin.pttl(base + ":events") <= 60_000  # retention
        assert await target.admin.pttl(base + ":record") > 3_600_000  # the record's
        assert [e.type for e in await collect(runs, "run-1")] == ["run.created", "run.completed"]
    finally:
        clients.command.execute_command = original  # type: ignore[method-assign]
        await clients.aclose()
