"""Acceptance (issue 4): two uvicorn instances share one Redis; 200 concurrent sends spread
over both instances and 10 conversations; every conversation ends with alternating
user/assistant messages, none lost or duplicated. Plus a Redis restart with AOF on."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from tests.contract.cluster import RedisServer, redis_server
from tests.e2e.server import uvicorn_server
from tests.services import redis_url

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CONVERSATIONS = 10
SENDS = 200


@pytest.fixture
def shared_redis() -> Iterator[str]:
    """The configured Redis under a key prefix of this test's own (nothing is flushed:
    other suites may share the server); the prefix's keys are deleted afterwards."""
    url = redis_url()
    prefix = f"parley-e2e-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {url} is not reachable: {exc!r}")
    sep = "&" if urlsplit(url).query else "?"
    yield f"{url}{sep}prefix={prefix}"
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()


async def test_two_instances_share_one_redis(shared_redis: str) -> None:
    env = {
        "PARLEY_STATE_URL": shared_redis,
        "PARLEY_MAX_CONCURRENT_EXECUTIONS": "0",
        "PARLEY_MOCK_DELAY_MS": "1",
    }
    with uvicorn_server(env) as a, uvicorn_server(env) as b:
        limits = httpx.Limits(max_connections=100)
        async with (
            httpx.AsyncClient(base_url=a, timeout=60, limits=limits) as ca,
            httpx.AsyncClient(base_url=b, timeout=60, limits=limits) as cb,
        ):
            conv_ids = []
            for i in range(CONVERSATIONS):
                r = await (ca if i % 2 else cb).post(
                    "/conversations",
                    json={
                        "pack_id": "general-assistant",
                        "prompt_name": "chat",
                        "user_id": "multi",
                        "conversation_id": f"multi-{i}",
                    },
                )
                assert r.status_code == 201, r.text
                conv_ids.append(r.json()["id"])

            async def send(n: int) -> httpx.Response:
                client = ca if n % 2 else cb
                conv = conv_ids[(n // 2) % CONVERSATIONS]
                return await client.post(
                    f"/conversations/{conv}/messages", json={"content": f"{conv}/msg-{n}"}
                )

            t0 = time.monotonic()
            results = await asyncio.gather(*(send(n) for n in range(SENDS)))
            elapsed = time.monotonic() - t0
            assert [r.status_code for r in results] == [200] * SENDS, [
                r.text for r in results if r.status_code != 200
            ][:3]
            assert len({r.json()["run_id"] for r in results}) == SENDS

            for conv in conv_ids:
                expected = {
                    f"{conv}/msg-{n}"
                    for n in range(SENDS)
                    if conv_ids[(n // 2) % CONVERSATIONS] == conv
                }
                for client in (ca, cb):  # both instances see the same history
                    msgs = (
                        await client.get(f"/conversations/{conv}/messages", params={"limit": 500})
                    ).json()["data"]
                    assert len(msgs) == 2 * len(expected)
                    users, replies = msgs[::2], msgs[1::2]
                    assert all(m["role"] == "user" for m in users)
                    assert all(m["role"] == "assistant" for m in replies)
                    for user, reply in zip(users, replies, strict=True):
                        assert reply["parent_id"] == user["id"]
                        assert reply["content"] == f"echo: {user['content']}"
                    assert sorted(m["content"] for m in users) == sorted(expected)
                state = (await ca.get(f"/conversations/{conv}")).json()
                assert state["message_count"] == 2 * len(expected)
    print(f"\n{SENDS} sends over 2 instances and {CONVERSATIONS} conversations: {elapsed:.2f}s")


async def _timed(coro: object) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = await coro  # type: ignore[misc]
    return r, time.monotonic() - t0


async def test_redis_restart_with_aof(tmp_path: Path) -> None:
    """While Redis is down requests get 503 store_unavailable quickly and /readyz fails;
    after it restarts (AOF on) the conversation continues."""
    with redis_server(tmp_path, appendonly=True) as rp:
        await _restart_scenario(rp)


async def _restart_scenario(rp: RedisServer) -> None:
    env = {"PARLEY_STATE_URL": rp.url}
    with uvicorn_server(env) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            r = await c.post(
                "/conversations",
                json={
                    "pack_id": "general-assistant",
                    "prompt_name": "chat",
                    "user_id": "aof",
                    "conversation_id": "aof-1",
                },
            )
            assert r.status_code == 201
            for text in ("one", "two"):
                assert (
                    await c.post("/conversations/aof-1/messages", json={"content": text})
                ).status_code == 200

            rp.stop()
            for request in (
                c.post("/conversations/aof-1/messages", json={"content": "lost?"}),
                c.get("/conversations/aof-1"),
                c.get("/conversations/aof-1/messages"),
                c.get("/readyz"),
            ):
                r, seconds = await _timed(request)
                assert r.status_code == 503, r.text
                assert r.json()["code"] == "store_unavailable"
                assert r.headers["content-type"].startswith("application/problem+json")
                assert seconds < 10, f"a request hung for {seconds:.1f}s"
            assert (await c.get("/healthz")).status_code == 200

            rp.start()
            deadline = time.monotonic() + 30
            while (await c.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "never became ready again"
                await asyncio.sleep(0.2)
            r = await c.post("/conversations/aof-1/messages", json={"content": "three"})
            assert r.status_code == 200, r.text
            msgs = (await c.get("/conversations/aof-1/messages")).json()["data"]
            assert [m["content"] for m in msgs] == [
                "one",
                "echo: one",
                "two",
                "echo: two",
                "three",
                "echo: three",
            ]
