"""An instance SIGKILLed mid-turn: its run reads `failed` (`instance_lost`) from the
surviving instance within 30 s, its idempotency key is free again, and the conversation
takes a new turn. Two real uvicorn processes sharing one Redis; the mock provider streams
slowly so the kill lands mid-turn."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import httpx
import pytest

from tests.e2e.server import uvicorn_server
from tests.e2e.test_multi_instance_e2e import shared_redis  # noqa: F401 - fixture

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

LOST_WITHIN_S = 30.0


async def _started_run(client: httpx.AsyncClient, conv_id: str, key: str) -> str:
    """Start a slow streaming turn and return its run id once it is running."""
    body = {"content": " ".join(["word"] * 200), "stream": True}
    async with client.stream(
        "POST",
        f"/conversations/{conv_id}/messages",
        json=body,
        headers={"Idempotency-Key": key},
    ) as r:
        run_id = None
        async for line in r.aiter_lines():
            if line.startswith("data:") and run_id is None:
                run_id = json.loads(line[5:])["run"]["id"]
            if line.startswith("event: message.delta"):
                assert run_id is not None
                return run_id  # the provider is streaming: mid-turn
    raise AssertionError("the stream ended before the turn was under way")


async def test_a_killed_instance_loses_its_run(shared_redis: str) -> None:  # noqa: F811
    env = {"PARLEY_STATE_URL": shared_redis, "PARLEY_MOCK_DELAY_MS": "200"}
    procs: list[subprocess.Popen[bytes]] = []
    with uvicorn_server(env, procs=procs) as a, uvicorn_server(env) as b:
        async with (
            httpx.AsyncClient(base_url=a, timeout=60) as ca,
            httpx.AsyncClient(base_url=b, timeout=60) as cb,
        ):
            r = await cb.post(
                "/conversations",
                json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "k"},
            )
            assert r.status_code == 201, r.text
            conv_id = r.json()["id"]
            run_id = await _started_run(ca, conv_id, "killed")
            procs[0].kill()  # SIGKILL: no shutdown, no terminal event, no lock release
            procs[0].wait()
            killed_at = time.monotonic()

            run_url = f"/conversations/{conv_id}/runs/{run_id}"
            while True:
                run = (await cb.get(run_url)).json()
                if run["status"] != "running":
                    break
                assert time.monotonic() - killed_at < LOST_WITHIN_S, run
                await asyncio.sleep(0.5)
            lost_after = time.monotonic() - killed_at
            assert run["status"] == "failed", run
            assert run["error"]["code"] == "instance_lost", run
            print(f"run lost {lost_after:.1f} s after SIGKILL")

            # the event stream ends with the recorded terminal event
            events = await cb.get(f"{run_url}/events")
            assert "event: run.failed" in events.text

            # nothing was committed; the key is free; the conversation takes a new turn
            assert (await cb.get(f"/conversations/{conv_id}/messages")).json()["data"] == []
            retry = await cb.post(
                f"/conversations/{conv_id}/messages",
                json={"content": "after the crash"},
                headers={"Idempotency-Key": "killed"},
            )
            assert retry.status_code == 200, retry.text
            assert retry.json()["run_id"] != run_id
            assert retry.json()["reply"]["content"] == "echo: after the crash"
