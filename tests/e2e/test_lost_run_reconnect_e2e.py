"""Outside tester T1 (2026-12-07): a run lost to SIGKILL on the default SQLite store, read
after the restart. Its event stream must end as a finished run's does: the terminal event
carries an `id:`, and a reconnect whose Last-Event-ID is at or past it answers 204 (what
makes a browser's EventSource stop instead of replaying the run every `retry:` forever)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import free_port, uvicorn_server
from tests.e2e.test_instance_lost_e2e import LOST_WITHIN_S

pytestmark = [pytest.mark.e2e]


def _events(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            if name in ("id", "event", "data"):
                fields[name] = value.strip()
        if "event" in fields:
            out.append(fields)
    return out


async def _seen_then_killed(
    base: str, proc: list[subprocess.Popen[bytes]], conv_id: str
) -> tuple[str, int]:
    """Start a slow streamed turn, read events until some deltas came, SIGKILL the server.
    Returns the run id and the last event id the client saw."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        body = {"content": " ".join(["word"] * 200), "stream": True}
        run_id, last_id, deltas = None, 0, 0
        async with client.stream("POST", f"/conversations/{conv_id}/messages", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("id:"):
                    last_id = int(line[3:])
                if line.startswith("data:") and run_id is None:
                    run_id = json.loads(line[5:])["run"]["id"]
                if line.startswith("event: message.delta"):
                    deltas += 1
                    if deltas == 10:
                        break
        proc[0].kill()
        proc[0].wait()
    assert run_id is not None and last_id > 0
    return run_id, last_id


async def test_a_lost_runs_stream_ends_with_an_id_and_then_204(tmp_path: Path) -> None:
    env = {
        "PARLEY_STATE_URL": f"sqlite+aiosqlite:///{tmp_path}/parley.db",
        "PARLEY_MOCK_DELAY_MS": "30",
    }
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with uvicorn_server(env, port=port, procs=procs) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            r = await client.post(
                "/conversations",
                json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "t1"},
            )
            assert r.status_code == 201, r.text
            conv_id = r.json()["id"]
        run_id, seen = await _seen_then_killed(base, procs, conv_id)
    with uvicorn_server(env, port=port) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            run_url = f"/conversations/{conv_id}/runs/{run_id}"
            started = time.monotonic()
            while (run := (await client.get(run_url)).json())["status"] == "running":
                assert time.monotonic() - started < LOST_WITHIN_S, run
                await asyncio.sleep(0.5)
            assert run["error"]["code"] == "instance_lost", run

            for after in (seen, 0):
                r = await client.get(f"{run_url}/events", headers={"Last-Event-ID": str(after)})
                assert r.status_code == 200, r.text
                events = _events(r.text)
                assert events[-1]["event"] == "run.failed", r.text
                ids = [int(e["id"]) for e in events if "id" in e]
                assert "id" in events[-1], r.text  # the terminal event has an id ...
                assert ids == sorted(ids) and ids[0] > after, r.text  # ... past the reader's
                terminal = int(events[-1]["id"])

                again = await client.get(
                    f"{run_url}/events", headers={"Last-Event-ID": str(terminal)}
                )
                assert again.status_code == 204, again.text  # ... and ends the stream
