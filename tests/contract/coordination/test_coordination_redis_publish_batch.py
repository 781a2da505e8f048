"""Redis: concurrent publishes share a round trip (`app.coordination.redis_publish_batch`),
each caller still getting its own event's seq, in order, and its own error."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio
from redis.exceptions import ResponseError

from app.coordination.redis_client import RedisClients, connect
from app.coordination.redis_publish_batch import PublishBatch
from app.coordination.redis_runs import RedisRunLog
from tests.contract.coordination.test_coordination_runs import collect, new_record

from .conftest import fresh_redis

pytestmark = pytest.mark.redis


@pytest_asyncio.fixture
async def clients() -> AsyncIterator[RedisClients]:
    async with AsyncExitStack() as stack:
        c = connect(await fresh_redis(stack))
        stack.push_async_callback(c.aclose)
        yield c


def count_pipelines(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many commands each pipeline the client makes sends (MULTI/EXEC not counted)."""
    sizes: list[int] = []
    original = client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **kw: Any) -> Any:
            sizes.append(len(pipe.command_stack))
            return await execute(*a, **kw)

        pipe.execute = counted
        return pipe

    monkeypatch.setattr(client, "pipeline", pipeline)
    return sizes


async def test_concurrent_publishes_of_many_runs_share_one_round_trip(
    clients: RedisClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = RedisRunLog(clients.command, prefix=clients.prefix)
    ids = [f"run-{i}" for i in range(10)]
    for run_id in ids:
        await runs.create(new_record(run_id))
    sizes = count_pipelines(clients.command, monkeypatch)
    # three events per run, all published at once: in order within each run
    published = await asyncio.gather(
        *(
            runs.publish(run_id, "message.delta", {"delta": str(n)})
            for n in range(3)
            for run_id in ids
        )
    )
    assert sizes == [30]
    assert [e.seq for e in published] == [n + 1 for n in range(3) for _ in ids]
    await runs.publish(ids[0], "run.completed", {})
    events = await collect(runs, ids[0])
    assert [(e.seq, e.data.get("delta")) for e in events] == [
        (1, "0"),
        (2, "1"),
        (3, "2"),
        (4, None),
    ]


async def test_a_batch_loads_its_script_when_redis_does_not_know_it(
    clients: RedisClients,
) -> None:
    """NOSCRIPT (Redis restarted): the script is loaded and the batch sent again, once."""
    client = clients.command
    key = f"{clients.prefix}batch-test:{uuid.uuid4().hex}"
    script = client.register_script(f"-- {uuid.uuid4().hex}\nreturn redis.call('INCR', KEYS[1])")
    batch = PublishBatch(client, script)
    replies = await asyncio.gather(*(batch.call(keys=[key], args=[]) for _ in range(5)))
    assert replies == [1, 2, 3, 4, 5]
    await client.delete(key)


async def test_an_error_in_a_batch_is_its_callers_alone(clients: RedisClients) -> None:
    client = clients.command
    key = f"{clients.prefix}batch-test:{uuid.uuid4().hex}"
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    await client.set(f"{key}:text", "not a number")
    batch = PublishBatch(client, script)
    replies = await asyncio.gather(
        batch.call(keys=[key], args=[]),
        batch.call(keys=[f"{key}:text"], args=[]),
        batch.call(keys=[key], args=[]),
        return_exceptions=True,
    )
    assert replies[0] == 1 and replies[2] == 2
    assert isinstance(replies[1], ResponseError)
    await client.delete(key, f"{key}:text")
