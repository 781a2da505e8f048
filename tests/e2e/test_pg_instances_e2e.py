"""Two uvicorn instances on one PostgreSQL and no Redis (issue 8): idempotency keys, run
records and run events live in the database, so every retry can land on the other
instance and `GET .../runs/{id}/events` works from either."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.e2e.process import server_process
from tests.services import scratch_postgres_database

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SENDS = 200
CONCURRENCY = 20
TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.requires_action"}


async def events_of(client: httpx.AsyncClient, conv: str, run_id: str) -> list[tuple[str, Any]]:
    out = []
    async with aconnect_sse(client, "GET", f"/conversations/{conv}/runs/{run_id}/events") as src:
        async for sse in src.aiter_sse():
            if sse.event and sse.data:
                out.append((sse.event, json.loads(sse.data)))
    return out


async def cut_stream(client: httpx.AsyncClient, path: str, content: str, key: str) -> str:
    """A streaming send that the client drops after the first delta; its run id."""
    run_id = ""
    with contextlib.suppress(httpx.TransportError):
        async with aconnect_sse(
            client,
            "POST",
            path,
            json={"content": content, "stream": True},
            headers={"Idempotency-Key": key},
        ) as source:
            async for sse in source.aiter_sse():
                if sse.event == "run.created":
                    run_id = json.loads(sse.data)["run"]["id"]
                if sse.event == "message.delta":
                    break
    return run_id


@pytest.mark.timeout(900)
async def test_two_instances_on_postgres_alone() -> None:
    async with scratch_postgres_database() as url:
        env = {
            "PARLEY_STATE_URL": url,
            "PARLEY_MOCK_DELAY_MS": "5",
            "PARLEY_MAX_CONCURRENT_EXECUTIONS": "0",
        }
        with server_process(env) as a, server_process(env) as b:
            a.start()
            b.start()
            limits = httpx.Limits(max_connections=50)
            async with (
                httpx.AsyncClient(base_url=a.url, timeout=120, limits=limits) as ca,
                httpx.AsyncClient(base_url=b.url, timeout=120, limits=limits) as cb,
            ):
                convs = []
                for i in range(SENDS):
                    r = await (ca, cb)[i % 2].post(
                        "/conversations",
                        json={
                            "pack_id": "general-assistant",
                            "prompt_name": "chat",
                            "user_id": "pg2",
                        },
                    )
                    assert r.status_code == 201, r.text
                    convs.append(r.json()["id"])
                gate = asyncio.Semaphore(CONCURRENCY)

                async def send(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
                    """The first attempt on one instance, the retry on the other: at the same
                    time (odd i), or after the first attempt's stream was dropped (even)."""
                    first, other = ((ca, cb), (cb, ca))[i % 2]
                    path = f"/conversations/{convs[i]}/messages"
                    content = f"message {i} " + "x " * 20
                    key = {"Idempotency-Key": f"key-{i}"}
                    async with gate:
                        if i % 2:
                            r1, r2 = await asyncio.gather(
                                first.post(path, json={"content": content}, headers=key),
                                other.post(path, json={"content": content}, headers=key),
                            )
                        else:
                            run_id = await cut_stream(first, path, content, key["Idempotency-Key"])
                            assert run_id
                            r2 = await other.post(path, json={"content": content}, headers=key)
                            r1 = await first.post(path, json={"content": content}, headers=key)
                            assert r2.json()["run_id"] == run_id, r2.text
                    assert r1.status_code == r2.status_code == 200, (r1.text, r2.text)
                    return r1.json(), r2.json()

                t0 = time.monotonic()
                results = await asyncio.gather(*(send(i) for i in range(SENDS)))
                elapsed = time.monotonic() - t0
                for i, (one, two) in enumerate(results):
                    assert one["run_id"] == two["run_id"], i
                    assert one["reply"] == two["reply"], i
                    assert one["reply"]["content"] == f"echo: message {i} " + "x " * 20
                assert len({one["run_id"] for one, _ in results}) == SENDS

                for i, conv in enumerate(convs):  # nothing duplicated, nothing lost
                    for client in (ca, cb):
                        msgs = (
                            await client.get(
                                f"/conversations/{conv}/messages", params={"limit": 10}
                            )
                        ).json()["data"]
                        assert [m["role"] for m in msgs] == ["user", "assistant"], (i, msgs)
                        assert msgs[0]["content"] == f"message {i} " + "x " * 20

                # events of a finished run, from either instance
                for i in range(0, SENDS, 40):
                    run_id = results[i][0]["run_id"]
                    seen = [await events_of(c, convs[i], run_id) for c in (ca, cb)]
                    assert seen[0] == seen[1]
                    assert seen[0][0][0] == "run.created" and seen[0][-1][0] == "run.completed"

                # a live run on one instance followed from the other
                path = f"/conversations/{convs[1]}/messages"
                long = " ".join(f"w{n}" for n in range(100))
                created: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                streamed: list[tuple[str, Any]] = []

                async def stream_on_a() -> None:
                    async with aconnect_sse(
                        ca, "POST", path, json={"content": long, "stream": True}
                    ) as source:
                        async for sse in source.aiter_sse():
                            if sse.event and sse.data:
                                streamed.append((sse.event, json.loads(sse.data)))
                                if sse.event == "run.created":
                                    created.set_result(streamed[0][1]["run"]["id"])

                on_a = asyncio.create_task(stream_on_a())
                live_id = await asyncio.wait_for(created, timeout=60)
                followed = await asyncio.wait_for(events_of(cb, convs[1], live_id), timeout=120)
                await on_a
                assert followed == streamed
                assert followed[-1][0] == "run.completed"
                deltas = "".join(d["delta"] for t, d in followed if t == "message.delta")
                assert deltas == f"echo: {long}"
    print(f"\n{SENDS} idempotent sends, each retried on the other instance: {elapsed:.1f}s")
