"""Idempotency-Key on creates and sends; re-attaching to a live run; run.snapshot when the
event log no longer holds the events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from app.settings import Settings
from tests.api.helpers import assert_problem, create_conv, send
from tests.api.sse_parse import parse_sse
from tests.conftest import running_app

BODY = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "idem"}


async def test_create_with_idempotency_key(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "create-1"}
    first = await client.post("/conversations", json=BODY, headers=key)
    again = await client.post("/conversations", json=BODY, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    listed = (await client.get("/conversations", params={"user_id": "idem"})).json()["data"]
    assert len(listed) == 1
    r = await client.post("/conversations", json={**BODY, "metadata": {"x": 1}}, headers=key)
    assert_problem(r, 422, "idempotency_key_reused")


async def test_concurrent_creates_with_one_key_make_one_conversation(
    client: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": "create-race"}
    rs = await asyncio.gather(
        *(client.post("/conversations", json=BODY, headers=key) for _ in range(10))
    )
    assert {r.status_code for r in rs} == {201}
    assert len({r.json()["id"] for r in rs}) == 1


async def test_failed_create_frees_the_key(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "create-fail"}
    bad = {**BODY, "pack_id": "nope"}
    assert_problem(
        await client.post("/conversations", json=bad, headers=key), 404, "pack_not_found"
    )
    r = await client.post("/conversations", json=BODY, headers=key)
    assert r.status_code == 201


async def test_concurrent_sends_with_one_key_run_one_turn(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    key = {"Idempotency-Key": "send-race"}
    rs = await asyncio.gather(
        *(
            client.post(
                f"/conversations/{conv['id']}/messages", json={"content": "once"}, headers=key
            )
            for _ in range(10)
        )
    )
    assert {r.status_code for r in rs} == {200}
    assert len({r.json()["run_id"] for r in rs}) == 1
    after = (await client.get(f"/conversations/{conv['id']}")).json()
    assert after["message_count"] == 2


async def test_retry_reattaches_to_the_live_stream(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(mock_delay_ms=30)) as client:
        conv = await create_conv(client)
        key = {"Idempotency-Key": "live"}
        body = {"content": "a b c d e f", "stream": True}
        url = f"/conversations/{conv['id']}/messages"
        first = asyncio.create_task(client.post(url, json=body, headers=key))
        await asyncio.sleep(0.08)
        retry = await client.post(url, json=body, headers=key)
        original = await first
        a, b = parse_sse(original.text), parse_sse(retry.text)
        assert [(e.id, e.event, e.data) for e in a] == [(e.id, e.event, e.data) for e in b]
        assert b[-1].event == "run.completed"
        # the retry may also be non-streaming: it returns the same run's result
        plain = await client.post(url, json={"content": "a b c d e f"}, headers=key)
        assert plain.json()["run_id"] == a[0].data["run"]["id"]
        assert (await client.get(f"/conversations/{conv['id']}")).json()["message_count"] == 2


async def test_snapshot_when_the_event_log_expired(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(run_event_retention_s=0.05)) as client:
        conv = await create_conv(client)
        turn = await send(client, conv["id"], "remember me")
        await asyncio.sleep(0.1)
        await send(client, conv["id"], "a later run lets the log drop expired events")
        r = await client.get(
            f"/conversations/{conv['id']}/runs/{turn['run_id']}/events",
            headers={"Last-Event-ID": "1"},
        )
        events = parse_sse(r.text)
        assert [e.event for e in events] == ["run.snapshot", "run.completed"]
        snapshot = events[0].data
        assert snapshot["run"]["id"] == turn["run_id"]
        assert [m["content"] for m in snapshot["messages"]] == ["remember me", "echo: remember me"]
        # both carry the log's last id: an EventSource reconnecting with it is told the run
        # is over (tests/api/test_eventsource_api.py)
        assert events[0].id == events[1].id and int(events[0].id or 0) > 1


async def test_a_repeated_idempotency_key_header_is_refused(client: httpx.AsyncClient) -> None:
    """Outside tester T5: two headers ran under the first silently (a proxy keeping the
    last would see another key). Nothing is created."""
    conv = await create_conv(client)
    twice = [("Idempotency-Key", "k1"), ("Idempotency-Key", "k2")]
    r = await client.post(
        f"/conversations/{conv['id']}/messages", json={"content": "x"}, headers=twice
    )
    assert_problem(r, 422, "validation_error")
    r = await client.post("/conversations", json=BODY, headers=twice)
    assert_problem(r, 422, "validation_error")
    assert (await client.get(f"/conversations/{conv['id']}/messages")).json()["data"] == []


async def test_whitespace_around_an_idempotency_key_is_not_part_of_it(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client)
    url = f"/conversations/{conv['id']}/messages"
    first = await client.post(url, json={"content": "x"}, headers={"Idempotency-Key": " k-ws\t"})
    again = await client.post(url, json={"content": "x"}, headers={"Idempotency-Key": "k-ws"})
    assert first.status_code == again.status_code == 200
    assert first.json()["run_id"] == again.json()["run_id"]


async def test_an_idempotency_key_of_only_whitespace_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """Outside tester: `Idempotency-Key: "   "` was stripped to nothing and taken for no
    key, so the request ran unprotected (a retry ran it twice). Every route with the header
    refuses it, naming the header, and nothing is created."""
    conv = await create_conv(client)
    url = f"/conversations/{conv['id']}/messages"
    for blank in ("   ", "\t", " \t "):
        key = {"Idempotency-Key": blank}
        for r in (
            await client.post(url, json={"content": "x"}, headers=key),
            await client.post("/conversations", json=BODY, headers=key),
        ):
            problem = assert_problem(r, 422, "validation_error")
            assert problem["errors"][0]["loc"] == ["header", "Idempotency-Key"], problem
    assert (await client.get(url)).json()["data"] == []
    listed = (await client.get("/conversations", params={"user_id": "idem"})).json()["data"]
    assert listed == []
