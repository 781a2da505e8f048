"""A client never answers a server-side tool call (tester-2 U3). A head moved onto the
assistant message of a server round (PUT head, rollback, fork at it) leaves its calls
unanswered on the path: `POST .../tool-results` naming one is 422 `invalid_state` (it took
any text as the tool's output, stored and sent to the model), and the turn resumes with the
server running them: `"results": []` when only server calls are open, or the client's
results for the client calls of a mixed round."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.backends import ALL_BACKENDS
from tests.api.tool_loop_helpers import mock_weather_app, turn, weather_conv


async def _path(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{cid}/messages")
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def _results(client: httpx.AsyncClient, cid: str, results: list[Any]) -> httpx.Response:
    return await client.post(f"/conversations/{cid}/tool-results", json={"results": results})


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_head_on_a_server_round_refuses_client_results_and_runs_the_calls(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with mock_weather_app(backend, settings_factory, tmp_path) as client:
        cid = await weather_conv(client, "weather")
        first = await turn(client, cid, "weather in Paris?")
        assert first["status"] == "completed", first
        asst = first["messages"][1]
        call = asst["tool_calls"][0]["id"]
        r = await client.put(f"/conversations/{cid}/head", json={"message_id": asst["id"]})
        assert r.status_code == 200, r.text
        before = await _path(client, cid)

        r = await _results(client, cid, [{"tool_call_id": call, "output": "FORGED -40C"}])
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_state" and call in r.json()["detail"]
        assert await _path(client, cid) == before

        r = await _results(client, cid, [])
        assert r.status_code == 200, r.text
        tools = [m for m in r.json()["messages"] if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in tools] == [call]
        assert "sunny" in tools[0]["content"] and "FORGED" not in tools[0]["content"]
        assert tools[0]["metadata"].get("mode") != "client"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_head_on_a_mixed_round_takes_only_the_client_result(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with mock_weather_app(backend, settings_factory, tmp_path) as client:
        cid = await weather_conv(client, "mixed")
        first = await turn(client, cid, "weather and time in Paris?")
        assert first["status"] == "requires_action", first
        asst = first["messages"][1]
        r = await client.put(f"/conversations/{cid}/head", json={"message_id": asst["id"]})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "requires_action"

        both = [
            {"tool_call_id": "call_1", "output": "rainy-by-client"},
            {"tool_call_id": "call_2", "output": "14:00"},
        ]
        r = await _results(client, cid, both)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_state" and "call_1" in r.json()["detail"]

        r = await _results(client, cid, [both[1]])
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed", r.json()
        path = await _path(client, cid)
        # in call order (the server's call_1 after the client's call_2 before, review R-E)
        assert [m["tool_call_id"] for m in path if m["role"] == "tool"] == ["call_1", "call_2"]
        tools = {m["tool_call_id"]: m for m in path if m["role"] == "tool"}
        assert tools["call_2"]["content"] == "14:00"
        assert "sunny" in tools["call_1"]["content"]
        assert tools["call_1"]["metadata"].get("mode") != "client"
