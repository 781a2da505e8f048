"""Streaming turns (SSE) through the in-process app: event contract, parity with
non-streaming turns, replay, failures, limits, busy policies, tool calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.helpers import assert_problem, create_conv, send
from tests.api.sse_parse import Event, parse_sse
from tests.conftest import MOCK_RESPONSES, REPO, running_app
from tests.fakes.openai_fake import FakeOpenAI, Reply

TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.requires_action"}


async def stream(
    client: httpx.AsyncClient, conv_id: str, body: dict[str, Any], **kw: Any
) -> tuple[httpx.Response, list[Event]]:
    r = await client.post(f"/conversations/{conv_id}/messages", json={**body, "stream": True}, **kw)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return r, parse_sse(r.text)


def comparable(m: dict[str, Any]) -> dict[str, Any]:
    drop = {"id", "parent_id", "conversation_id", "created_at", "run_id"}
    return {k: v for k, v in m.items() if k not in drop}


async def test_event_contract(settings_factory: Callable[..., Settings]) -> None:
    async with running_app(settings_factory(mock_delay_ms=5)) as client:
        await _check_event_contract(client)


async def _check_event_contract(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    r, events = await stream(client, conv["id"], {"content": "hello big world"})
    assert [e.id for e in events] == [str(i) for i in range(1, len(events) + 1)]
    types = [e.event for e in events]
    assert types[0] == "run.created" and types[1] == "message.created"
    assert types[-2:] == ["message.completed", "run.completed"]
    assert sum(t in TERMINAL for t in types) == 1
    deltas = [e.data["delta"] for e in events if e.event == "message.delta"]
    assert len(deltas) >= 3 and "".join(deltas) == "echo: hello big world"
    completed = events[-2].data["message"]
    assert {e.data["message_id"] for e in events if e.event == "message.delta"} == {completed["id"]}
    assert events[-1].data["run"]["status"] == "completed"
    assert events[-1].data["usage"] == completed["usage"]
    assert r.headers["x-run-id"] == events[0].data["run"]["id"]
    stored = (await client.get(f"/conversations/{conv['id']}/messages")).json()["data"]
    assert stored[-1] == completed, "message.completed is what was committed"


async def test_fast_provider_text_is_coalesced(client: httpx.AsyncClient) -> None:
    """A provider faster than the event log (the mock without delay produces every token
    at once) gets fewer, larger deltas; the text is the same."""
    conv = await create_conv(client)
    _, events = await stream(client, conv["id"], {"content": "one two three four five"})
    deltas = [e.data["delta"] for e in events if e.event == "message.delta"]
    assert len(deltas) < 6 and "".join(deltas) == "echo: one two three four five"


async def test_accept_header_selects_streaming(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    r = await client.post(
        f"/conversations/{conv['id']}/messages",
        json={"content": "hi"},
        headers={"accept": "text/event-stream"},
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    assert parse_sse(r.text)[-1].event == "run.completed"


@pytest.mark.parametrize(
    ("accept", "streams"),
    [
        ("TEXT/Event-Stream", True),
        ("application/json;q=0.9, text/event-stream;q=0.5", True),
        ("text/event-stream;q=0", False),
        ("text/event-streamx", False),
        ("*/*", False),
        ("text/event-stream;q=oops", False),
    ],
)
async def test_accept_is_read_as_media_ranges(
    client: httpx.AsyncClient, accept: str, streams: bool
) -> None:
    """Outside tester T8: the header was a substring test (q=0 and a longer type streamed,
    another case did not)."""
    conv = await create_conv(client)
    r = await client.post(
        f"/conversations/{conv['id']}/messages", json={"content": "hi"}, headers={"accept": accept}
    )
    assert r.status_code == 200, r.text
    kind = "text/event-stream" if streams else "application/json"
    assert r.headers["content-type"].startswith(kind)


async def test_accept_lines_are_one_list(client: httpx.AsyncClient) -> None:
    """Review R5: two Accept field lines are one list (RFC 9110 §5.3); the first line
    alone said JSON."""
    conv = await create_conv(client)
    r = await client.post(
        f"/conversations/{conv['id']}/messages",
        json={"content": "hi"},
        headers=[("accept", "application/json"), ("accept", "text/event-stream")],
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    r = await client.get(
        "/users/alice/export", headers=[("accept", "text/plain"), ("accept", "application/json")]
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert [d["conversation"]["id"] for d in r.json()] == [conv["id"]]


async def test_streaming_and_non_streaming_commit_identical_turns(
    settings_factory: Callable[..., Settings],
) -> None:
    fake = FakeOpenAI(default=Reply(text="the same answer every time", usage=(40, 6)))
    settings = settings_factory(openai_api_key="sk-test")
    async with fake.client() as http, running_app(settings, provider_client=http) as client:
        a = await create_conv(client, provider="openai")
        b = await create_conv(client, provider="openai")
        plain = await send(client, a["id"], "question")
        _, events = await stream(client, b["id"], {"content": "question"})
        msgs_a = (await client.get(f"/conversations/{a['id']}/messages")).json()["data"]
        msgs_b = (await client.get(f"/conversations/{b['id']}/messages")).json()["data"]
        conv_a = (await client.get(f"/conversations/{a['id']}")).json()
        conv_b = (await client.get(f"/conversations/{b['id']}")).json()
    assert [comparable(m) for m in msgs_a] == [comparable(m) for m in msgs_b]
    assert plain["finish_reason"] == events[-2].data["message"]["finish_reason"] == "stop"
    assert (
        plain["usage"]
        == events[-1].data["usage"]
        == {"input_tokens": 40, "output_tokens": 6, "total_tokens": 46}
    )
    assert conv_a["usage"] == conv_b["usage"]


async def test_replay_from_last_event_id_and_after(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    _, events = await stream(client, conv["id"], {"content": "one two three"})
    run_id = events[0].data["run"]["id"]
    url = f"/conversations/{conv['id']}/runs/{run_id}/events"
    replay = parse_sse((await client.get(url, headers={"Last-Event-ID": "1"})).text)
    assert [(e.id, e.event, e.data) for e in replay] == [
        (e.id, e.event, e.data) for e in events[1:]
    ]
    tail = parse_sse((await client.get(url, params={"after": len(events) - 1})).text)
    assert [e.event for e in tail] == ["run.completed"]
    run = (await client.get(f"/conversations/{conv['id']}/runs/{run_id}")).json()
    assert run["status"] == "completed" and run["finished_at"] and run["error"] is None
    assert_problem(await client.get(f"/conversations/{conv['id']}/runs/nope"), 404, "run_not_found")
    other = await create_conv(client)
    assert_problem(
        await client.get(f"/conversations/{other['id']}/runs/{run_id}"), 404, "run_not_found"
    )


async def test_midstream_failure_then_idempotent_retry(
    settings_factory: Callable[..., Settings],
) -> None:
    """Acceptance: a provider failing mid-stream yields run.failed, the conversation is
    unchanged, and the same request with the same Idempotency-Key can be retried."""
    fake = FakeOpenAI(default=Reply(text="complete answer"))
    settings = settings_factory(openai_api_key="sk-test")
    async with fake.client() as http, running_app(settings, provider_client=http) as client:
        conv = await create_conv(client, provider="openai")
        await send(client, conv["id"], "warm up")
        before = (await client.get(f"/conversations/{conv['id']}")).json()
        headers = {"Idempotency-Key": "retry-me"}
        fake.replies.insert(0, Reply(text="partial answer that breaks", fail_after=2))
        _, events = await stream(client, conv["id"], {"content": "q"}, headers=headers)
        assert [e.event for e in events if e.event == "message.delta"]
        assert events[-1].event == "run.failed"
        assert events[-1].data["error"]["code"] == "provider_error"
        after = (await client.get(f"/conversations/{conv['id']}")).json()
        assert after["version"] == before["version"]
        assert after["head_message_id"] == before["head_message_id"]
        _, retry = await stream(client, conv["id"], {"content": "q"}, headers=headers)
        assert retry[-1].event == "run.completed"
        assert retry[0].data["run"]["id"] != events[0].data["run"]["id"]
        # a third call with the same key re-attaches to the completed run, no new turn
        again = await send(client, conv["id"], "q")  # no key: a genuinely new turn
        r = await client.post(
            f"/conversations/{conv['id']}/messages", json={"content": "q"}, headers=headers
        )
        assert r.json()["run_id"] == retry[0].data["run"]["id"]
        assert again["run_id"] != r.json()["run_id"]
        r = await client.post(
            f"/conversations/{conv['id']}/messages", json={"content": "different"}, headers=headers
        )
        assert_problem(r, 422, "idempotency_key_reused")
        final = (await client.get(f"/conversations/{conv['id']}")).json()
        assert final["message_count"] == 6


async def test_concurrency_limit_is_429_with_retry_after(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(max_concurrent_executions=1, mock_delay_ms=50)
    async with running_app(settings) as client:
        a = await create_conv(client)
        b = await create_conv(client)
        slow = asyncio.create_task(send(client, a["id"], "one two three four five six"))
        await asyncio.sleep(0.1)
        r = await client.post(f"/conversations/{b['id']}/messages", json={"content": "x"})
        body = assert_problem(r, 429, "too_many_executions")
        assert r.headers["retry-after"] == "1" and body["detail"]
        queued = await send(client, a["id"], "same conversation queues instead")
        assert queued["status"] == "completed"
        await slow
        assert (await send(client, b["id"], "now there is room"))["status"] == "completed"


async def until_busy(client: httpx.AsyncClient, conv_id: str) -> None:
    """Until a turn holds the conversation (a fixed sleep is too short on a loaded box)."""
    for _ in range(500):
        if (await client.get(f"/conversations/{conv_id}")).json()["status"] == "running":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the turn never started")


async def test_if_busy_reject_names_the_active_run(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(mock_delay_ms=40)) as client:
        conv = await create_conv(client)
        slow = asyncio.create_task(stream(client, conv["id"], {"content": "a b c d e f"}))
        await until_busy(client, conv["id"])
        r = await client.post(
            f"/conversations/{conv['id']}/messages", json={"content": "x", "if_busy": "reject"}
        )
        body = assert_problem(r, 409, "conversation_busy")
        _, events = await slow
        assert body["run_id"] == events[0].data["run"]["id"]
        status = (await client.get(f"/conversations/{conv['id']}")).json()
        assert status["message_count"] == 2 and status["status"] == "idle"


async def test_if_busy_interrupt_cancels_the_active_run(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(mock_delay_ms=40)) as client:
        conv = await create_conv(client)
        slow = asyncio.create_task(stream(client, conv["id"], {"content": "a b c d e f g h"}))
        await until_busy(client, conv["id"])
        turn = await send(client, conv["id"], "urgent", if_busy="interrupt")
        _, events = await slow
        assert events[-1].event == "run.cancelled"
        msgs = (await client.get(f"/conversations/{conv['id']}/messages")).json()["data"]
        assert [m["content"] for m in msgs] == ["urgent", "echo: urgent"]
        assert turn["messages"][0]["parent_id"] is None


async def test_cancelling_a_finished_run_changes_nothing(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    turn = await send(client, conv["id"], "done")
    r = await client.post(f"/conversations/{conv['id']}/runs/{turn['run_id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "completed"


async def test_cancel_endpoint_stops_a_running_turn(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(mock_delay_ms=40)) as client:
        conv = await create_conv(client)
        task = asyncio.create_task(stream(client, conv["id"], {"content": "h i j k l m n o"}))
        await until_busy(client, conv["id"])
        assert (await client.get(f"/conversations/{conv['id']}")).json()["status"] == "running"
        busy = await client.post(
            f"/conversations/{conv['id']}/messages", json={"content": "x", "if_busy": "reject"}
        )
        active_run = assert_problem(busy, 409, "conversation_busy")["run_id"]
        cancelled = await client.post(f"/conversations/{conv['id']}/runs/{active_run}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        _, events = await task
        assert events[-1].event == "run.cancelled"
        assert [e.event for e in events].count("run.cancelled") == 1
        conv_after = (await client.get(f"/conversations/{conv['id']}")).json()
        assert conv_after["message_count"] == 0 and conv_after["status"] == "idle"
        assert (await send(client, conv["id"], "after cancel"))["status"] == "completed"


def client_tool_pack() -> dict[str, Any]:
    """general-assistant offering the a2a-demo's tool, unbound: a client tool."""
    doc: dict[str, Any] = json.loads((REPO / "packs" / "general-assistant.pack.json").read_text())
    doc["id"] = "a2a-client-tools"
    name = "a2a__research_agent__search_papers"
    doc["tools"] = {
        name: {
            "name": name,
            "description": "Search papers",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        }
    }
    doc["prompts"]["chat"]["tools"] = [name]
    return doc


async def test_scripted_tool_calls_and_tool_results(
    settings_factory: Callable[..., Settings],
) -> None:
    scenarios = MOCK_RESPONSES / "server__a2a__examples__a2a-demo__arena__mock-responses.yaml"
    async with running_app(settings_factory(mock_scenarios=scenarios)) as client:
        assert (await client.post("/packs", json=client_tool_pack())).status_code == 201
        conv = await create_conv(
            client, pack_id="a2a-client-tools", metadata={"mock_scenario": "delegated-research"}
        )
        first = await send(client, conv["id"], "find quantum papers")
        assert first["status"] == "requires_action" and first["finish_reason"] == "tool_calls"
        (call,) = first["pending_tool_calls"]
        assert call["name"] == "a2a__research_agent__search_papers"
        assert (await client.get(f"/conversations/{conv['id']}")).json()["status"] == (
            "requires_action"
        )
        r = await client.post(f"/conversations/{conv['id']}/messages", json={"content": "?"})
        assert_problem(r, 422, "invalid_state")
        r = await client.post(
            f"/conversations/{conv['id']}/tool-results",
            json={"results": [{"tool_call_id": "wrong", "output": "x"}]},
        )
        assert_problem(r, 422, "invalid_state")
        r = await client.post(
            f"/conversations/{conv['id']}/tool-results",
            json={
                "results": [{"tool_call_id": call["id"], "output": {"papers": 3}}],
                "stream": True,
            },
        )
        events = parse_sse(r.text)
        assert "tool_call.completed" in [e.event for e in events]
        assert events[-1].event == "run.completed"
        final = events[-2].data["message"]
        assert final["content"].startswith("Based on the research results")
        msgs = (await client.get(f"/conversations/{conv['id']}/messages")).json()["data"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
        assert msgs[2]["tool_call_id"] == call["id"] and msgs[2]["content"] == '{"papers": 3}'
        conv_after = (await client.get(f"/conversations/{conv['id']}")).json()
        assert conv_after["status"] == "idle" and conv_after["message_count"] == 4
