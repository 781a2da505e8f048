"""A tool call is answered (`POST .../tool-results`) or decided (`.../tool-approvals`) once
per request: a second entry for the same `tool_call_id` is 422 `validation_error` and
nothing runs or is stored (review R-E: two results were accepted, the first silently
dropped; two decisions failed later, inside the run, as `invalid_state`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app.settings import Settings
from tests.api.helpers import assert_problem
from tests.api.test_tool_resume_consent_api import REFUND
from tests.api.tool_loop_helpers import MOCK_WEATHER, tool_app, turn, weather_conv


async def _path(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{cid}/messages")
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def test_two_results_for_one_call_are_refused(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, MOCK_WEATHER) as client:
        cid = await weather_conv(client, "mixed")
        first = await turn(client, cid, "weather and time in Paris?")
        [pending] = first["pending_tool_calls"]
        before = await _path(client, cid)
        results = [
            {"tool_call_id": pending["id"], "output": "A"},
            {"tool_call_id": pending["id"], "output": "B"},
        ]
        r = await client.post(f"/conversations/{cid}/tool-results", json={"results": results})
        body = assert_problem(r, 422, "validation_error")
        assert pending["id"] in str(body), body
        assert await _path(client, cid) == before
        assert (await client.get(f"/conversations/{cid}")).json()["status"] == "requires_action"


async def test_two_decisions_for_one_call_are_refused(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, REFUND) as client:
        cid = await weather_conv(client, "refund", pack="hitl-example")
        first = await turn(client, cid, "refund order A-1 please")
        [pending] = first["pending_approvals"]
        before = await _path(client, cid)
        decisions = [
            {"tool_call_id": pending["tool_call_id"], "approve": True},
            {"tool_call_id": pending["tool_call_id"], "approve": False, "reason": "no"},
        ]
        r = await client.post(f"/conversations/{cid}/tool-approvals", json={"decisions": decisions})
        body = assert_problem(r, 422, "validation_error")
        assert pending["tool_call_id"] in str(body), body
        assert await _path(client, cid) == before
