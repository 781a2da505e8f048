"""Idempotency survives a restart (issue 8): a stream cut by SIGTERM or SIGKILL, the
server restarted on the same database, the client's retry with the same Idempotency-Key
does not run the turn twice, on SQLite and on PostgreSQL (no Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.e2e.process import ServerProcess, server_process
from tests.services import scratch_postgres_database

pytestmark = pytest.mark.e2e

WORDS = " ".join(f"word{i}" for i in range(80))  # the mock echoes it, one delta per token


@contextlib.asynccontextmanager
async def state_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/parley.db"
        return
    async with scratch_postgres_database() as url:
        yield url


async def new_conversation(client: httpx.AsyncClient) -> str:
    r = await client.post(
        "/conversations",
        json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "e2e"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def stream_until_cut(
    client: httpx.AsyncClient, server: ServerProcess, path: str, key: str, sig: int
) -> list[str]:
    """Stream a send; after three deltas, signal the server; read what still comes."""
    seen: list[str] = []
    with contextlib.suppress(httpx.TransportError):
        async with aconnect_sse(
            client,
            "POST",
            path,
            json={"content": WORDS, "stream": True},
            headers={"Idempotency-Key": key},
        ) as source:
            async for sse in source.aiter_sse():
                if sse.event:
                    seen.append(sse.event)
                if seen.count("message.delta") == 3:
                    server.signal(sig)
    return seen


async def retry(client: httpx.AsyncClient, path: str, key: str) -> httpx.Response:
    """The client's retry with the same key. A run whose instance died reads
    `instance_lost` (503) once its heartbeat expires; the retry after that runs it."""
    deadline = time.monotonic() + 60
    while True:
        r = await client.post(path, json={"content": WORDS}, headers={"Idempotency-Key": key})
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        assert r.json()["code"] in ("instance_lost", "store_unavailable"), r.text
        await asyncio.sleep(0.2)


async def path_messages(client: httpx.AsyncClient, conv: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{conv}/messages", params={"limit": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_retry_after_a_restart_does_not_run_the_turn_twice(
    backend: str, sig: int, tmp_path: Path
) -> None:
    async with state_url(backend, tmp_path) as url:
        env = {"PARLEY_STATE_URL": url, "PARLEY_MOCK_DELAY_MS": "60"}
        with server_process(env) as server:
            server.start()
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                conv = await new_conversation(client)
                path = f"/conversations/{conv}/messages"
                seen = await stream_until_cut(client, server, path, "k-restart", sig)
                assert "run.created" in seen
                server.wait(timeout=60)
                server.start()  # same port, same database
                first = await retry(client, path, "k-restart")
                assert first.status_code == 200, first.text
                again = await retry(client, path, "k-restart")
                assert again.status_code == 200, again.text
                assert again.json()["run_id"] == first.json()["run_id"]
                messages = await path_messages(client, conv)
                roles = [m["role"] for m in messages]
                assert roles == ["user", "assistant"], json.dumps(messages)[:2000]
                assert messages[0]["content"] == WORDS
                assert messages[1]["content"] == f"echo: {WORDS}"
                conv_doc = (await client.get(f"/conversations/{conv}")).json()
                assert conv_doc["message_count"] == 2
