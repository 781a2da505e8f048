"""The server-side tool loop through the app's real lifespan: the `tools` fixture pack's
`get_weather` bound to a live HTTP tool (a loopback server), an exec script and an MCP
stdio server; the mock provider scripted through a PromptKit mock-responses file."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.json_text import loads_strict
from app.settings import Settings
from tests.api.sse_parse import parse_sse
from tests.api.tool_loop_helpers import (
    PARIS,
    TOOLS_PACK,
    exec_tool,
    live_weather,
    mcp_stdio,
    roles,
    tool_app,
    turn,
    weather_conv,
)
from tests.fakes.openai_fake import FakeOpenAI, Reply
from tests.unit.tools.http_peer import HttpPeer, http_peer

WEATHER_BODY = {
    "current": {"temp_c": 21, "summary": "sunny", "station": "LFPG"},
    "internal": "do not show the model",
}
FILTERED = {"temp": 21, "summary": "sunny"}


@pytest.fixture
async def peer(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HttpPeer]:
    monkeypatch.setenv("PARLEY_TEST_WEATHER_KEY", "k-123")
    async with http_peer() as p:
        p.handler = lambda r: (200, {}, json.dumps(WEATHER_BODY).encode())
        yield p


async def test_live_tool_turn_runs_on_the_server(
    settings_factory: Callable[..., Settings], tmp_path: Path, peer: HttpPeer
) -> None:
    async with tool_app(
        settings_factory, tmp_path, {"get_weather": live_weather(peer.url)}
    ) as client:
        conv_id = await weather_conv(client, "weather")
        body = await turn(client, conv_id, "weather in Paris?")
        metrics = (await client.get("/metrics")).text
        stored = (await client.get(f"/conversations/{conv_id}/messages")).json()["data"]
        conv = (await client.get(f"/conversations/{conv_id}")).json()
    assert body["status"] == "completed" and body["finish_reason"] == "stop"
    assert roles(body) == ["user", "assistant", "tool", "assistant"]
    _, call_msg, tool_msg, reply = body["messages"]
    assert call_msg["tool_calls"][0]["arguments"] == PARIS
    assert call_msg["finish_reason"] == "tool_calls"
    assert tool_msg["name"] == "get_weather" and tool_msg["tool_call_id"] == "call_1"
    assert json.loads(tool_msg["content"]) == FILTERED  # the model sees only the mapped body
    assert tool_msg["metadata"]["is_error"] is False and tool_msg["metadata"]["mode"] == "live"
    assert tool_msg["metadata"]["latency_ms"] > 0
    assert body["reply"] == reply and reply["content"] == "It is sunny in Paris."
    assert body["pending_tool_calls"] == [] and body["pending_approvals"] == []
    # usage and cost sum over both rounds
    assert body["usage"]["input_tokens"] == (
        call_msg["usage"]["input_tokens"] + reply["usage"]["input_tokens"]
    )
    assert conv["usage"]["total_tokens"] == body["usage"]["total_tokens"]
    assert conv["status"] == "idle" and conv["message_count"] == 4
    assert [m["id"] for m in stored] == [m["id"] for m in body["messages"]]
    [request] = peer.requests  # the mapped request
    assert (request.method, request.path) == ("GET", "/v1/weather/FR")
    assert request.query == {"city": ["Paris"], "units": ["metric"]}
    assert request.headers["x-client"] == "parley"  # static header
    assert request.headers["x-api-key"] == "k-123"  # header from the environment
    assert 'parley_tool_calls_total{outcome="ok",tool="get_weather"} 1.0' in metrics


async def test_streaming_shows_the_tool_events_in_order(
    settings_factory: Callable[..., Settings], tmp_path: Path, peer: HttpPeer
) -> None:
    async with tool_app(
        settings_factory, tmp_path, {"get_weather": live_weather(peer.url)}
    ) as client:
        conv_id = await weather_conv(client, "weather")
        r = await client.post(
            f"/conversations/{conv_id}/messages", json={"content": "weather?", "stream": True}
        )
        events = parse_sse(r.text)
        stored = (await client.get(f"/conversations/{conv_id}/messages")).json()["data"]
    kinds = [e.event for e in events if e.event != "message.delta"]
    assert kinds == [
        "run.created",
        "message.created",  # user
        "tool_call.created",
        "message.completed",  # assistant asking for the tool
        "tool_call.completed",
        "message.created",  # tool message
        "message.completed",  # the answer
        "run.completed",
    ]
    completed = next(e for e in events if e.event == "tool_call.completed").data
    assert completed["tool_call_id"] == "call_1" and completed["output"] == FILTERED
    assert completed["is_error"] is False and completed["latency_ms"] > 0
    assert [int(e.id) for e in events] == list(range(1, len(events) + 1))
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert events[-2].data["message"]["content"] == "It is sunny in Paris."


async def test_the_model_sees_only_the_filtered_body_and_usage_sums(
    settings_factory: Callable[..., Settings], tmp_path: Path, peer: HttpPeer
) -> None:
    fake = FakeOpenAI(
        replies=[
            Reply(
                text="",
                tool_calls=[{"id": "c1", "name": "get_weather", "arguments": PARIS}],
                usage=(100, 10),
            ),
            Reply(text="Sunny, 21 degrees.", usage=(150, 20)),
        ]
    )
    async with (
        fake.client() as http,
        tool_app(
            settings_factory,
            tmp_path,
            {"get_weather": live_weather(peer.url)},
            provider_client=http,
            openai_api_key="sk-test",
            default_provider="openai",
            default_model="gpt-4o-mini",
        ) as client,
    ):
        conv_id = await weather_conv(client, "weather")
        body = await turn(client, conv_id, "weather in Paris?")
    assert body["reply"]["content"] == "Sunny, 21 degrees."
    assert body["usage"] == {"input_tokens": 250, "output_tokens": 30, "total_tokens": 280}
    first, second = fake.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather", "get_time"]
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "c1"
    assert json.loads(tool_message["content"]) == FILTERED
    assert "do not show" not in json.dumps(second)


async def test_the_same_turn_through_an_exec_tool_and_an_mcp_stdio_server(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    for binding, servers, expected in [
        (exec_tool("weather"), None, {"city": "Paris", "temp_c": 21, "args": PARIS}),
        ({"mode": "mcp"}, [mcp_stdio()], "sunny in Paris, FR"),
    ]:
        async with tool_app(
            settings_factory, tmp_path, {"get_weather": binding}, mcp_servers=servers
        ) as client:
            conv_id = await weather_conv(client, "weather")
            body = await turn(client, conv_id, "weather in Paris?")
        assert roles(body) == ["user", "assistant", "tool", "assistant"], body
        tool_msg = body["messages"][2]
        output = tool_msg["content"] if isinstance(expected, str) else json.loads(
            tool_msg["content"])  # fmt: skip
        assert output == expected and tool_msg["metadata"]["is_error"] is False
        assert body["reply"]["content"] == "It is sunny in Paris."


async def test_mcp_tools_selected_by_wildcard_run_in_the_loop(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    pack = {
        "id": "mcp-weather",
        "name": "MCP weather",
        "version": "1.0.0",
        "template_engine": {"version": "v1", "syntax": "{{variable}}"},
        "prompts": {
            "main": {
                "id": "main",
                "name": "Main",
                "version": "1.0.0",
                "system_template": "You help.",
                "tools": ["mcp__weather__*"],
                "tool_policy": {"blocklist": ["mcp__weather__die", "mcp__weather__secret*"]},
            }
        },
    }
    async with tool_app(settings_factory, tmp_path, {}, mcp_servers=[mcp_stdio()]) as client:
        assert (await client.post("/packs", json=pack)).status_code == 201
        r = await client.post(
            "/conversations",
            json={"pack_id": "mcp-weather", "prompt_name": "main", "user_id": "alice",
                  "metadata": {"mock_scenario": "mcp_echo"}},
        )  # fmt: skip
        body = await turn(client, r.json()["id"], "echo hi")
        blocked = await client.post(
            "/conversations",
            json={"pack_id": "mcp-weather", "prompt_name": "main", "user_id": "alice",
                  "metadata": {"mock_scenario": "mcp_die"}},
        )  # fmt: skip
        refused = await turn(client, blocked.json()["id"], "die")
        still = await turn(client, r.json()["id"], "echo again")
    assert roles(body) == ["user", "assistant", "tool", "assistant"]
    assert body["messages"][2]["name"] == "mcp__weather__echo"
    echoed = body["messages"][2]
    assert echoed["content"] == "hi" and echoed["metadata"]["mode"] == "mcp"
    # a blocklisted tool is not offered: calling it anyway is an error result, never a call
    assert "unknown tool 'mcp__weather__die'" in refused["messages"][2]["content"]
    assert still["status"] == "completed"


async def test_independent_calls_of_a_round_run_concurrently(
    settings_factory: Callable[..., Settings], tmp_path: Path, peer: HttpPeer
) -> None:
    async def slow(_: Any) -> tuple[int, dict[str, str], bytes]:
        await asyncio.sleep(0.5)
        return 200, {}, json.dumps(WEATHER_BODY).encode()

    peer.handler = slow
    async with tool_app(
        settings_factory, tmp_path, {"get_weather": live_weather(peer.url)}
    ) as client:
        conv_id = await weather_conv(client, "two_cities")
        started = time.monotonic()
        body = await turn(client, conv_id, "Paris and Rome?")
        elapsed = time.monotonic() - started
    assert roles(body) == ["user", "assistant", "tool", "tool", "assistant"]
    assert [m["tool_call_id"] for m in body["messages"][2:4]] == ["call_1", "call_2"]
    assert len(peer.requests) == 2
    assert elapsed < 0.95, elapsed  # two 0.5 s calls side by side, not one after the other


async def test_a_round_mixing_server_and_client_tools_pauses_for_the_client_ones(
    settings_factory: Callable[..., Settings], tmp_path: Path, peer: HttpPeer
) -> None:
    async with tool_app(
        settings_factory, tmp_path, {"get_weather": live_weather(peer.url)}
    ) as client:
        conv_id = await weather_conv(client, "mixed")
        first = await turn(client, conv_id, "weather and time in Paris?")
        assert first["status"] == "requires_action" and first["finish_reason"] == "tool_calls"
        assert roles(first) == ["user", "assistant", "tool"]  # get_weather ran
        assert first["reply"]["role"] == "assistant"
        [pending] = first["pending_tool_calls"]
        assert pending["name"] == "get_time" and pending["id"] == "call_2"
        assert len(peer.requests) == 1
        r = await client.post(
            f"/conversations/{conv_id}/tool-results",
            json={"results": [{"tool_call_id": "call_1", "output": "not yours"}]},
        )
        assert r.status_code == 422 and r.json()["code"] == "invalid_state"
        r = await client.post(
            f"/conversations/{conv_id}/tool-results",
            json={"results": [{"tool_call_id": "call_2", "output": "14:00"}]},
        )
        assert r.status_code == 200, r.text
        second = r.json()
        stored = (await client.get(f"/conversations/{conv_id}/messages")).json()["data"]
    assert second["status"] == "completed"
    assert second["reply"]["content"] == "Weather and time known."
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "tool", "assistant"]
    assert {m["tool_call_id"] for m in stored[2:4]} == {"call_1", "call_2"}
    assert len(peer.requests) == 1  # the server tool ran once


async def test_tool_failures_are_results_the_model_sees(
    settings_factory: Callable[..., Settings], tmp_path: Path, peer: HttpPeer
) -> None:
    peer.handler = lambda r: (503, {}, b'{"error": "down"}')
    async with tool_app(
        settings_factory, tmp_path, {"get_weather": live_weather(peer.url)}
    ) as client:
        conv_id = await weather_conv(client, "weather")
        failed = await turn(client, conv_id, "weather?")
        unknown_id = await weather_conv(client, "unknown_tool")
        unknown = await turn(client, unknown_id, "launch it")
        metrics = (await client.get("/metrics")).text
    assert failed["status"] == "completed"
    tool_msg = failed["messages"][2]
    assert tool_msg["metadata"]["is_error"] is True and tool_msg["content"].startswith("HTTP 503")
    assert unknown["status"] == "completed"
    assert "unknown tool 'launch_rocket'" in unknown["messages"][2]["content"]
    assert unknown["messages"][2]["metadata"]["is_error"] is True
    assert 'parley_tool_calls_total{outcome="error",tool="get_weather"} 1.0' in metrics
    assert 'parley_tool_calls_total{outcome="error",tool="unknown"} 1.0' in metrics


async def test_a_model_calling_tools_forever_stops_at_max_rounds(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, {"get_weather": exec_tool("weather")}) as c:
        conv_id = await weather_conv(c, "forever")
        body = await turn(c, conv_id, "keep going")
    # schema default max_rounds 5: five rounds ran tools, the sixth call had tools off and
    # its tool call was dropped
    assert body["status"] == "completed" and body["finish_reason"] == "tool_limit"
    assert body["reply"]["metadata"]["tool_limit"] == "max_rounds"
    assert roles(body) == ["user"] + ["assistant", "tool"] * 5 + ["assistant"]
    assert body["reply"]["tool_calls"] == []


async def test_the_same_call_three_times_in_a_row_is_stopped(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, {"get_weather": exec_tool("weather")}) as c:
        conv_id = await weather_conv(c, "repeat")
        body = await turn(c, conv_id, "again and again")
    tools = [m for m in body["messages"] if m["role"] == "tool"]
    assert [t["metadata"]["is_error"] for t in tools] == [False, False, True]
    assert "called 3 times in a row" in tools[2]["content"]
    assert body["finish_reason"] == "tool_limit"
    assert body["reply"]["metadata"]["tool_limit"] == "repeated_call"


async def test_a_hung_exec_tool_is_killed_at_its_timeout_and_the_turn_completes(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    binding = exec_tool("hang", str(pids), timeout_ms=800)
    async with tool_app(settings_factory, tmp_path, {"get_weather": binding}) as client:
        conv_id = await weather_conv(client, "weather")
        started = time.monotonic()
        body = await turn(client, conv_id, "weather?")
        elapsed = time.monotonic() - started
    assert body["status"] == "completed" and body["reply"]["content"] == "It is sunny in Paris."
    tool_msg = body["messages"][2]
    assert tool_msg["metadata"]["is_error"] is True and "killed" in tool_msg["content"]
    assert 0.7 < elapsed < 5, elapsed


async def test_tool_policy_tool_choice_none_runs_no_tool(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, {"get_weather": exec_tool("weather")}) as c:
        pack = json.loads(TOOLS_PACK.read_text())
        pack["id"] = "tools-none"
        pack["prompts"]["assistant"]["tool_policy"] = {"tool_choice": "none"}
        assert (await c.post("/packs", json=pack)).status_code == 201
        r = await c.post(
            "/conversations",
            json={"pack_id": "tools-none", "prompt_name": "assistant", "user_id": "alice",
                  "metadata": {"mock_scenario": "weather"}},
        )  # fmt: skip
        body = await turn(c, r.json()["id"], "weather?")
    assert roles(body) == ["user", "assistant"]
    assert body["finish_reason"] == "tool_limit"
    assert body["reply"]["metadata"]["tool_limit"] == "tool_choice"


async def test_an_idempotent_retry_runs_the_tools_once(
    settings_factory: Callable[..., Settings], tmp_path: Path, peer: HttpPeer
) -> None:
    async with tool_app(
        settings_factory, tmp_path, {"get_weather": live_weather(peer.url)}
    ) as client:
        conv_id = await weather_conv(client, "weather")
        headers = {"Idempotency-Key": "k-1"}
        first, second = await asyncio.gather(
            client.post(
                f"/conversations/{conv_id}/messages", json={"content": "w?"}, headers=headers
            ),
            client.post(
                f"/conversations/{conv_id}/messages", json={"content": "w?"}, headers=headers
            ),
        )
    assert first.status_code == second.status_code == 200
    assert first.json()["run_id"] == second.json()["run_id"]
    assert len(peer.requests) == 1


async def test_cancelling_a_run_during_a_tool_call_commits_nothing(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    binding = exec_tool("hang", str(pids), timeout_ms=20_000)
    async with tool_app(settings_factory, tmp_path, {"get_weather": binding}) as client:
        conv_id = await weather_conv(client, "weather")
        task = asyncio.create_task(
            client.post(
                f"/conversations/{conv_id}/messages", json={"content": "w?", "stream": True}
            )
        )
        for _ in range(200):
            if pids.exists() and pids.read_text():
                break
            await asyncio.sleep(0.05)
        conv = (await client.get(f"/conversations/{conv_id}")).json()
        runs = await _active_run(client, conv_id)
        r = await client.post(f"/conversations/{conv_id}/runs/{runs}/cancel")
        assert r.json()["status"] == "cancelled"
        events = parse_sse((await task).text)
        after = (await client.get(f"/conversations/{conv_id}")).json()
    assert conv["status"] == "running"
    assert events[-1].event == "run.cancelled"
    assert after["message_count"] == 0 and after["status"] == "idle"


async def _active_run(client: httpx.AsyncClient, conv_id: str) -> str:
    r = await client.post(
        f"/conversations/{conv_id}/messages", json={"content": "x", "if_busy": "reject"}
    )
    assert r.status_code == 409
    return str(r.json()["run_id"])


async def test_tool_choice_required_applies_to_the_first_round_only(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    fake = FakeOpenAI(
        replies=[
            Reply(text="", tool_calls=[{"id": "c1", "name": "get_weather", "arguments": PARIS}]),
            Reply(text="Done."),
        ]
    )
    pack = json.loads(TOOLS_PACK.read_text())
    pack["id"] = "tools-required"
    pack["prompts"]["assistant"]["tool_policy"] = {"tool_choice": "required"}
    async with (
        fake.client() as http,
        tool_app(
            settings_factory,
            tmp_path,
            {"get_weather": exec_tool("weather")},
            provider_client=http,
            openai_api_key="sk-test",
            default_provider="openai",
            default_model="gpt-4o-mini",
        ) as client,
    ):
        assert (await client.post("/packs", json=pack)).status_code == 201
        conv_id = await weather_conv(client, "weather", pack="tools-required")
        body = await turn(client, conv_id, "weather?")
    assert body["reply"]["content"] == "Done."
    assert [r["tool_choice"] for r in fake.requests] == ["required", "auto"]


async def test_unstorable_text_in_a_tool_result_is_replaced_not_a_failed_commit(
    settings_factory: Callable[..., Settings], tmp_path: Path, peer: HttpPeer
) -> None:
    peer.handler = lambda r: (200, {}, b'{"current": {"temp_c": 1, "summary": "a\\u0000b\\ud800"}}')
    async with tool_app(
        settings_factory, tmp_path, {"get_weather": live_weather(peer.url)}
    ) as client:
        conv_id = await weather_conv(client, "weather")
        body = await turn(client, conv_id, "weather?")
        stored = (await client.get(f"/conversations/{conv_id}/messages")).json()["data"]
    assert body["status"] == "completed"
    assert json.loads(stored[2]["content"]) == {"temp": 1, "summary": "a\ufffdb\ufffd"}


async def test_a_tool_output_with_nan_or_infinity_is_a_tool_error_not_stored(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """Tester-2 U4: an output holding NaN or an infinity (an MCP server's structured
    content as its SDK parses it; here a mock binding, YAML's .nan / .inf) was written as
    `NaN` into the tool message and the run's events: no JSON (PostgreSQL refused the
    events, an EventSource's JSON.parse throws). It is the tool's error now."""
    bad = {"get_weather": {"mock_result": {"temp": float("nan"), "high": float("inf")}}}
    async with tool_app(settings_factory, tmp_path, bad) as client:
        conv_id = await weather_conv(client, "weather")
        body = await turn(client, conv_id, "weather in Paris?")
        stored = (await client.get(f"/conversations/{conv_id}/messages")).json()["data"]
    tool = next(m for m in stored if m["role"] == "tool")
    assert "not standard JSON" in tool["content"] and tool["metadata"]["is_error"] is True
    loads_strict(json.dumps(stored))  # no NaN / Infinity anywhere (ValueError otherwise)
    assert body["status"] == "completed"
