"""Streaming against a real uvicorn: deltas arrive one by one, a client that disconnects
does not stop the run, reconnecting replays, several readers follow one run."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.e2e.server import uvicorn_server

pytestmark = pytest.mark.e2e

DELAY_MS = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("e2e") / "parley.db"
    env = {
        "PARLEY_STATE_URL": f"sqlite+aiosqlite:///{db}",
        "PARLEY_MOCK_DELAY_MS": str(DELAY_MS),
        "PARLEY_SSE_PING_S": "0.1",
    }
    with uvicorn_server(env) as url:
        yield url


async def new_conversation(client: httpx.AsyncClient) -> str:
    r = await client.post(
        "/conversations",
        json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "e2e"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def read_events(
    client: httpx.AsyncClient, method: str, url: str, **kw: Any
) -> list[tuple[float, str, str, dict[str, Any]]]:
    out = []
    async with aconnect_sse(client, method, url, **kw) as source:
        async for sse in source.aiter_sse():
            if not sse.data:
                continue  # httpx-sse surfaces `: ping` comments as empty events
            out.append((time.monotonic(), sse.id, sse.event, json.loads(sse.data)))
    return out


async def test_deltas_arrive_one_by_one(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        conv = await new_conversation(client)
        events = await read_events(
            client,
            "POST",
            f"/conversations/{conv}/messages",
            json={"content": "one two three four five", "stream": True},
        )
    deltas = [t for t, _, kind, _ in events if kind == "message.delta"]
    assert len(deltas) == 6  # "echo: " + five words
    gaps = [b - a for a, b in itertools.pairwise(deltas)]
    # buffered deltas arrive together (every gap ~0); one late wake-up of a loaded
    # machine delivers two at once (one gap ~0 next to a long one), which is not buffering
    assert statistics.median(gaps) > DELAY_MS / 1000 * 0.5, f"deltas were buffered: {gaps}"
    assert sum(1 for g in gaps if g < DELAY_MS / 1000 * 0.25) <= 1, f"deltas bunched: {gaps}"
    assert events[-1][2] == "run.completed"


def test_curl_shows_deltas_one_by_one(server: str) -> None:
    """What a user sees with `curl -N`: each delta line arrives on its own."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    conv = httpx.post(
        f"{server}/conversations",
        json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "curl"},
    ).json()["id"]
    proc = subprocess.Popen(
        [
            "curl",
            "-sN",
            "-X",
            "POST",
            f"{server}/conversations/{conv}/messages",
            "-H",
            "content-type: application/json",
            "-d",
            json.dumps({"content": "alpha beta gamma delta", "stream": True}),
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    arrivals = []
    for raw in proc.stdout:
        line = raw.decode().rstrip("\r\n")
        if line == "event: message.delta":
            arrivals.append(time.monotonic())
        if line == "event: run.completed":
            break
    proc.wait(timeout=10)
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] > 3 * DELAY_MS / 1000 * 0.5


async def test_disconnect_then_reconnect_with_last_event_id(server: str) -> None:
    """Acceptance: kill the client after the first delta; the run finishes, the reply is
    committed, and Last-Event-ID: 1 replays every later event then the terminal one."""
    words = "the quick brown fox jumps over the lazy dog"
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        conv = await new_conversation(client)
        seen = []
        async with aconnect_sse(
            client,
            "POST",
            f"/conversations/{conv}/messages",
            json={"content": words, "stream": True},
        ) as source:
            async for sse in source.aiter_sse():
                if not sse.data:
                    continue
                seen.append((sse.id, sse.event, json.loads(sse.data)))
                if sse.event == "message.delta":
                    break  # leaving the block closes the connection mid-stream
        run_id = seen[0][2]["run"]["id"]
        assert seen[-1][1] == "message.delta"

        for _ in range(100):
            run = (await client.get(f"/conversations/{conv}/runs/{run_id}")).json()
            if run["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        assert run["status"] == "completed"
        msgs = (await client.get(f"/conversations/{conv}/messages")).json()["data"]
        assert [m["content"] for m in msgs] == [words, f"echo: {words}"]

        replay = await read_events(
            client,
            "GET",
            f"/conversations/{conv}/runs/{run_id}/events",
            headers={"Last-Event-ID": "1"},
        )
    ids = [int(i) for _, i, _, _ in replay]
    assert ids == list(range(2, len(replay) + 2)), "every event after 1, in order"
    kinds = [k for _, _, k, _ in replay]
    assert kinds[0] == "message.created" and kinds[-1] == "run.completed"
    assert "".join(d["delta"] for _, _, k, d in replay if k == "message.delta") == (
        f"echo: {words}"
    )
    assert seen[1:] == [(i, k, d) for _, i, k, d in replay[: len(seen) - 1]]


async def test_on_disconnect_cancel_commits_nothing(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        conv = await new_conversation(client)
        async with aconnect_sse(
            client,
            "POST",
            f"/conversations/{conv}/messages",
            json={"content": "a b c d e f g h i j", "stream": True, "on_disconnect": "cancel"},
        ) as source:
            async for sse in source.aiter_sse():
                if sse.event == "run.created":
                    run_id = json.loads(sse.data)["run"]["id"]
                if sse.event == "message.delta":
                    break
        for _ in range(100):
            run = (await client.get(f"/conversations/{conv}/runs/{run_id}")).json()
            if run["status"] != "running" and run["status"] != "queued":
                break
            await asyncio.sleep(0.05)
        assert run["status"] == "cancelled"
        conv_after = (await client.get(f"/conversations/{conv}")).json()
        assert conv_after["message_count"] == 0


async def test_on_disconnect_cancel_applies_to_a_non_streaming_request(server: str) -> None:
    """A client waiting for the JSON answer that hangs up cancels the run too (outside
    tester T9: only the streaming form looked at the field; the run committed)."""
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        conv = await new_conversation(client)
        words = " ".join(f"w{i}" for i in range(40))  # 40 tokens x DELAY_MS
        body = {"content": words, "on_disconnect": "cancel"}
        async with httpx.AsyncClient(base_url=server, timeout=0.3) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post(f"/conversations/{conv}/messages", json=body)
        # the run (40 x 40 ms) is cancelled: the conversation is free again long before it
        # could have finished, and the next turn is the only one committed
        t = time.monotonic()
        while (
            r := await client.post(f"/conversations/{conv}/messages", json={"content": "x"})
        ).status_code == 409:
            assert time.monotonic() - t < 0.8, "the hung-up run still holds the conversation"
            await asyncio.sleep(0.05)
        assert r.status_code == 200 and r.json()["status"] == "completed"
        await asyncio.sleep(2 * 40 * DELAY_MS / 1000)
        assert (await client.get(f"/conversations/{conv}")).json()["message_count"] == 2
        # without the field the same hang-up lets the run finish and commit
        async with httpx.AsyncClient(base_url=server, timeout=0.3) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post(f"/conversations/{conv}/messages", json={"content": words})
        for _ in range(200):
            if (await client.get(f"/conversations/{conv}")).json()["message_count"] == 4:
                break
            await asyncio.sleep(0.05)
        assert (await client.get(f"/conversations/{conv}")).json()["message_count"] == 4


async def test_a_retry_that_hangs_up_does_not_cancel_the_first_requests_run(
    server: str,
) -> None:
    """A same-Idempotency-Key retry attaches to the first request's run; its own hang-up,
    even with `on_disconnect: "cancel"`, does not cancel what the first request still
    waits for (review R6)."""
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        conv = await new_conversation(client)
        words = " ".join(f"w{i}" for i in range(30))  # 30 x DELAY_MS
        key = {"Idempotency-Key": "r6-key"}
        url = f"/conversations/{conv}/messages"
        first = asyncio.create_task(client.post(url, json={"content": words}, headers=key))
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=server, timeout=0.3) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                body = {"content": words, "on_disconnect": "cancel"}
                await impatient.post(url, json=body, headers=key)
        answer = await first
        assert answer.status_code == 200 and answer.json()["status"] == "completed"
        assert (await client.get(f"/conversations/{conv}")).json()["message_count"] == 2


async def test_several_clients_follow_one_run(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        conv = await new_conversation(client)
        origin = asyncio.create_task(
            read_events(
                client,
                "POST",
                f"/conversations/{conv}/messages",
                json={"content": "shared stream for everyone", "stream": True},
            )
        )
        run_id = None
        for _ in range(100):
            r = await client.post(
                f"/conversations/{conv}/messages", json={"content": "x", "if_busy": "reject"}
            )
            if r.status_code == 409:
                run_id = r.json()["run_id"]
                break
            await asyncio.sleep(0.01)
        assert run_id is not None
        followers = await asyncio.gather(
            *(
                read_events(client, "GET", f"/conversations/{conv}/runs/{run_id}/events")
                for _ in range(3)
            )
        )
        first = await origin
    expected = [(i, k, d) for _, i, k, d in first]
    for events in followers:
        assert [(i, k, d) for _, i, k, d in events] == expected


async def test_keepalive_pings_are_sent(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        conv = await new_conversation(client)
        async with client.stream(
            "POST",
            f"/conversations/{conv}/messages",
            json={"content": "a b c d e f g h", "stream": True},
        ) as r:
            body = "".join([chunk async for chunk in r.aiter_text()])
    assert ": ping" in body
