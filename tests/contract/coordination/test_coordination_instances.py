"""Two app instances sharing one state database and one Redis coordinator, end to end
through the HTTP API: idempotent retries, event streams, busy conversations and
cancellation work whichever instance a request lands on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.api.helpers import assert_problem, create_conv, send
from tests.api.sse_parse import parse_sse
from tests.conftest import make_settings, running_app

from .conftest import fresh_redis

pytestmark = pytest.mark.redis


@pytest_asyncio.fixture
async def instances(
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with AsyncExitStack() as stack:
        url = await fresh_redis(stack)
        settings = make_settings(tmp_path, coordination_url=url, mock_delay_ms=30)
        a = await stack.enter_async_context(running_app(settings))
        b = await stack.enter_async_context(running_app(settings))
        yield a, b


async def test_an_idempotent_retry_on_another_instance_reattaches(
    instances: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = instances
    conv = await create_conv(a)
    headers = {"Idempotency-Key": "retry-1"}
    path = f"/conversations/{conv['id']}/messages"
    first, second = await asyncio.gather(
        a.post(path, json={"content": "hello there"}, headers=headers),
        b.post(path, json={"content": "hello there"}, headers=headers),
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["run_id"] == second.json()["run_id"]
    assert first.json()["reply"] == second.json()["reply"]
    assert (await b.get(f"/conversations/{conv['id']}")).json()["message_count"] == 2


async def test_events_of_a_run_are_readable_on_another_instance(
    instances: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = instances
    conv = await create_conv(a)
    path = f"/conversations/{conv['id']}/messages"
    async with a.stream("POST", path, json={"content": "one two three", "stream": True}) as r:
        first_chunk = ""
        async for chunk in r.aiter_text():
            first_chunk += chunk
            if "\n\n" in first_chunk:
                break
        run_id = parse_sse(first_chunk.split("\n\n")[0] + "\n\n")[0].data["run"]["id"]
        seen = await b.get(f"/conversations/{conv['id']}/runs/{run_id}/events")
    events = parse_sse(seen.text)
    assert [e.id for e in events] == [str(i) for i in range(1, len(events) + 1)]
    assert events[0].event == "run.created" and events[-1].event == "run.completed"
    replay = await b.get(
        f"/conversations/{conv['id']}/runs/{run_id}/events", headers={"Last-Event-ID": "2"}
    )
    assert [e.id for e in parse_sse(replay.text)] == [e.id for e in events[2:]]


async def test_busy_and_cancel_across_instances(
    instances: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = instances
    conv = await create_conv(a)
    path = f"/conversations/{conv['id']}/messages"
    slow = asyncio.create_task(
        a.post(path, json={"content": "a b c d e f g h i j k l m n o p", "stream": True})
    )
    for _ in range(200):  # until the turn runs (holds the lock)
        await asyncio.sleep(0.01)
        if (await b.get(f"/conversations/{conv['id']}")).json()["status"] == "running":
            break
    busy = await b.post(path, json={"content": "x", "if_busy": "reject"})
    run_id = assert_problem(busy, 409, "conversation_busy")["run_id"]
    assert run_id
    cancelled = await b.post(f"/conversations/{conv['id']}/runs/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    events = parse_sse((await slow).text)
    assert events[-1].event == "run.cancelled"
    assert (await send(b, conv["id"], "after cancel"))["status"] == "completed"
