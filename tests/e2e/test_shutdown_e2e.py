"""SIGTERM with live streams on a real uvicorn (issue 8): every stream ends with a terminal
event (turns that finish within `PARLEY_SHUTDOWN_GRACE_S` complete, the rest are
cancelled); after the restart the store holds each completed turn once and nothing of the
cancelled ones (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.e2e.process import server_process
from tests.services import scratch_postgres_database

pytestmark = pytest.mark.e2e

SHORT = " ".join(f"s{i}" for i in range(8))  # ~0.4 s of deltas
LONG = " ".join(f"l{i}" for i in range(400))  # ~20 s: outlives the grace
TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.requires_action"}


@contextlib.asynccontextmanager
async def state_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/parley.db"
        return
    async with scratch_postgres_database() as url:
        yield url


class Stream:
    def __init__(self, conv: str, content: str) -> None:
        self.conv, self.content = conv, content
        self.events: list[tuple[str, dict[str, object]]] = []
        self.first_delta = asyncio.Event()

    async def run(self, client: httpx.AsyncClient) -> None:
        async with aconnect_sse(
            client,
            "POST",
            f"/conversations/{self.conv}/messages",
            json={"content": self.content, "stream": True},
        ) as source:
            async for sse in source.aiter_sse():
                if not sse.event or not sse.data:
                    continue
                self.events.append((sse.event, json.loads(sse.data)))
                if sse.event == "message.delta":
                    self.first_delta.set()

    @property
    def run_id(self) -> str:
        return str(self.events[0][1]["run"]["id"])  # type: ignore[index]


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_sigterm_with_ten_live_streams(backend: str, tmp_path: Path) -> None:
    async with state_url(backend, tmp_path) as url:
        env = {
            "PARLEY_STATE_URL": url,
            "PARLEY_MOCK_DELAY_MS": "50",
            "PARLEY_SHUTDOWN_GRACE_S": "3",
        }
        with server_process(env) as server:
            server.start()
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                streams = []
                for i in range(10):
                    r = await client.post(
                        "/conversations",
                        json={
                            "pack_id": "general-assistant",
                            "prompt_name": "chat",
                            "user_id": "e2e",
                        },
                    )
                    assert r.status_code == 201, r.text
                    streams.append(Stream(r.json()["id"], LONG if i % 2 else SHORT))
                tasks = [asyncio.create_task(s.run(client)) for s in streams]
                # the long ones are live; the short ones may have finished already
                await asyncio.wait_for(
                    asyncio.gather(*(s.first_delta.wait() for s in streams)), timeout=60
                )
                signalled = time.monotonic()
                server.signal(signal.SIGTERM)
                outcomes = await asyncio.wait_for(
                    asyncio.gather(*tasks, return_exceptions=True), timeout=60
                )
                ended = time.monotonic() - signalled
                server.wait(timeout=60)
                failed = [o for o in outcomes if isinstance(o, BaseException)]
                assert not failed, (failed, server.output())
            for s in streams:
                types = [t for t, _ in s.events]
                assert types[0] == "run.created" and types[-1] in TERMINAL, types
                assert sum(t in TERMINAL for t in types) == 1, types
                expected = "run.cancelled" if s.content == LONG else "run.completed"
                assert types[-1] == expected, (s.content[:10], types[-5:])
            assert ended < 3 + 10, ended  # the grace, then a prompt cancellation

            server.start()  # the store after the restart
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                for s in streams:
                    messages = (
                        await client.get(f"/conversations/{s.conv}/messages", params={"limit": 100})
                    ).json()["data"]
                    run = (await client.get(f"/conversations/{s.conv}/runs/{s.run_id}")).json()
                    if s.content == LONG:
                        assert messages == [] and run["status"] == "cancelled", run
                    else:
                        assert [m["role"] for m in messages] == ["user", "assistant"]
                        assert messages[1]["content"] == f"echo: {SHORT}"
                        assert run["status"] == "completed", run
