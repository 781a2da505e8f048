"""The prompt's `tool_policy` bounds a turn resumed on a round whose calls are open on the
path (a head moved onto the round, or imported with it) as it bounds a live round (review
R-F, R-D): the server runs only the calls `max_tool_calls_per_turn` admits, in call order,
and not a call made three times in a row; every other open call is answered with an error
result (the provider gets a result for each call) and nothing more runs in the turn. The
resumed round's calls are counted once: a resume is the turn the policy allows. An import
takes at most 128 calls on one message (`app.manager.import_checks.MAX_TOOL_CALLS`), so a resume
writes at most that many tool messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.manager.import_checks import MAX_TOOL_CALLS
from app.settings import Settings
from tests.api import tool_loop_helpers as helpers
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.export_helpers import recomputed_checksum
from tests.api.helpers import assert_problem
from tests.api.tool_loop_helpers import (
    MOCK_WEATHER,
    PARIS,
    TOOLS_PACK,
    tool_app,
    turn,
    weather_conv,
)


async def _import_round(
    client: httpx.AsyncClient, new_id: str, arguments: list[Any]
) -> httpx.Response:
    """Import the weather conversation cut to its user message and an assistant message
    calling get_weather once per `arguments` (ids call_0, call_1, ...) as its head."""
    cid = await weather_conv(client, "weather")
    first = await turn(client, cid, "weather in Paris?")
    assert first["status"] == "completed", first
    doc: dict[str, Any] = (await client.get(f"/conversations/{cid}/export")).json()
    asst = next(m for m in doc["messages"] if m["role"] == "assistant" and m["tool_calls"])
    call = asst["tool_calls"][0]
    asst["tool_calls"] = [
        {**call, "id": f"call_{i}", "arguments": args} for i, args in enumerate(arguments)
    ]
    doc["messages"] = [m for m in doc["messages"] if m["id"] in (asst["id"], asst["parent_id"])]
    doc["head_message_id"] = doc["conversation"]["head_message_id"] = asst["id"]
    doc["conversation"].update(id=new_id, message_count=2)
    doc["checkpoints"] = []
    doc["checksum"] = recomputed_checksum(doc)
    return await client.post("/conversations/import", json=doc)


async def _imported(client: httpx.AsyncClient, new_id: str, arguments: list[Any]) -> None:
    r = await _import_round(client, new_id, arguments)
    assert r.status_code == 201 and r.json()["status"] == "requires_action", r.text


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_an_imported_round_runs_no_more_calls_than_the_policy_admits(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """128 calls on one imported message (the most an import takes); max_tool_calls_per_turn
    is 10 (the default). All of them ran before."""
    cities = [{"city": f"City{i}", "country": "FR"} for i in range(MAX_TOOL_CALLS)]
    async with (
        state_url_for(backend, tmp_path) as url,
        tool_app(settings_factory, tmp_path, MOCK_WEATHER, state_url=url) as client,
    ):
        await _imported(client, "imported-many", cities)
        r = await client.post("/conversations/imported-many/tool-results", json={"results": []})
        assert r.status_code == 200, r.text
        body = r.json()
        tools = _tools(body)
        assert [m["tool_call_id"] for m in tools] == [f"call_{i}" for i in range(MAX_TOOL_CALLS)]
        ran, refused = tools[:10], tools[10:]
        assert all("sunny" in m["content"] and not m["metadata"]["is_error"] for m in ran)
        assert all(m["metadata"]["is_error"] for m in refused)
        assert all("max_tool_calls_per_turn" in m["content"] for m in refused)
        assert body["status"] == "completed" and not body["reply"]["tool_calls"], body["reply"]


async def test_an_import_refuses_a_message_with_more_tool_calls_than_a_request_answers(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """A resume writes a tool message for each open call: a document held only by its size
    (64 MiB) made one resume write hundreds of thousands of them. 129 > 128: refused."""
    cities = [{"city": f"City{i}", "country": "FR"} for i in range(MAX_TOOL_CALLS + 1)]
    async with tool_app(settings_factory, tmp_path, MOCK_WEATHER) as client:
        r = await _import_round(client, "imported-too-many", cities)
        body = assert_problem(r, 422, "validation_error")
        assert any(e["loc"][-1] == "tool_calls" for e in body["errors"]), body
        assert (await client.get("/conversations/imported-too-many")).status_code == 404


async def test_a_resumed_round_does_not_run_a_call_made_three_times_in_a_row(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, MOCK_WEATHER) as client:
        await _imported(client, "imported-same", [PARIS] * 5)
        r = await client.post("/conversations/imported-same/tool-results", json={"results": []})
        assert r.status_code == 200, r.text
        tools = _tools(r.json())
        assert [m["metadata"]["is_error"] for m in tools] == [False, False, True, True, True]
        assert all("3 times in a row" in m["content"] for m in tools[2:])


BUDGET = {
    "turns": {
        1: {"tool_calls": [{"name": "get_weather", "arguments": PARIS}]},
        2: {
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome", "country": "IT"}}]
        },
        3: {"response": "Paris and Rome known."},
    }
}


async def test_a_resumed_server_round_is_counted_once(
    settings_factory: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_tool_calls_per_turn 2, two single-call rounds then an answer: the turn the policy
    allows. PUT head onto its first round + `"results": []` is that turn again (it ended
    `tool_limit` before: the head's call was counted from the path and again when it ran)."""
    scenarios = {"scenarios": {**helpers.SCENARIOS["scenarios"], "budget": BUDGET}}
    monkeypatch.setattr(helpers, "SCENARIOS", scenarios)
    async with tool_app(settings_factory, tmp_path, MOCK_WEATHER) as client:
        pack = json.loads(TOOLS_PACK.read_text())
        pack["id"] = "tools-budget"
        pack["prompts"]["assistant"]["tool_policy"] = {
            "max_rounds": 3,
            "max_tool_calls_per_turn": 2,
        }
        assert (await client.post("/packs", json=pack)).status_code == 201
        cid = await weather_conv(client, "budget", pack="tools-budget")
        first = await turn(client, cid, "weather in Paris and Rome?")
        assert first["finish_reason"] == "stop", first
        assert first["reply"]["content"] == "Paris and Rome known."

        asst = first["messages"][1]
        r = await client.put(f"/conversations/{cid}/head", json={"message_id": asst["id"]})
        assert r.status_code == 200 and r.json()["status"] == "requires_action", r.text
        r = await client.post(f"/conversations/{cid}/tool-results", json={"results": []})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["finish_reason"] == "stop", body["reply"]["metadata"]
        assert body["reply"]["content"] == "Paris and Rome known."
        assert [m["role"] for m in body["messages"]] == ["tool", "assistant", "tool", "assistant"]
        assert not any(m["metadata"]["is_error"] for m in _tools(body))
