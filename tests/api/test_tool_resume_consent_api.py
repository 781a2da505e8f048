"""A turn resumed on a round whose calls are open on the path (`POST .../tool-results`,
`.../tool-approvals`) asks a human before running a call whose tool's binding requires
consent *now*, whether or not the stored round says so (review R-F). The stored
`metadata.approval_required` is client-written in an imported document, and a round run
before the operator added consent has none: either way the server used to run the call
on `"results": []` (ddf213d runs a resumed round's server calls) with no decision asked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, BACKENDS, state_url_for
from tests.api.export_helpers import recomputed_checksum
from tests.api.helpers import assert_problem
from tests.api.tool_loop_helpers import MOCK_WEATHER, exec_tool, tool_app, turn, weather_conv

CONSENT = "Refund this order?"
REFUND = {
    "process_refund": {
        **exec_tool("weather"),  # answers {"city": ..., "temp_c": 21, "args": <what it got>}
        "client": {"consent": {"required": True, "message": CONSENT}},
    }
}
TIME_CONSENT = "Read the clock?"
TIME_NEEDS_CONSENT = {
    **MOCK_WEATHER,
    "get_time": {
        **exec_tool("weather"),
        "client": {"consent": {"required": True, "message": TIME_CONSENT}},
    },
}


async def _path(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{cid}/messages")
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_an_imported_round_without_its_approval_mark_still_waits_for_a_decision(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        tool_app(settings_factory, tmp_path, REFUND, state_url=url) as client,
    ):
        cid = await weather_conv(client, "refund", pack="hitl-example")
        first = await turn(client, cid, "refund order A-1 please")
        assert first["status"] == "requires_action" and first["pending_approvals"], first
        doc: dict[str, Any] = (await client.get(f"/conversations/{cid}/export")).json()
        doc["conversation"]["id"] = "imported-refund"
        [asst] = [m for m in doc["messages"] if m["role"] == "assistant"]
        del asst["metadata"]["approval_required"]
        asst["tool_calls"][0]["arguments"]["amount"] = 99999
        doc["checksum"] = recomputed_checksum(doc)
        r = await client.post("/conversations/import", json=doc)
        assert r.status_code == 201 and r.json()["status"] == "requires_action", r.text
        before = await _path(client, "imported-refund")

        r = await client.post("/conversations/imported-refund/tool-results", json={"results": []})
        detail = assert_problem(r, 422, "invalid_state")["detail"]
        assert "tool-approvals" in detail and "call_1" in detail
        assert await _path(client, "imported-refund") == before  # nothing ran or was stored

        edited = {"order_id": "A-1", "amount": 50, "reason": "damaged"}
        r = await client.post(
            "/conversations/imported-refund/tool-approvals",
            json={"decisions": [{"tool_call_id": "call_1", "approve": True, "arguments": edited}]},
        )
        assert r.status_code == 200, r.text  # (409 "never asked" before: no stored mark)
        [tool] = [m for m in r.json()["messages"] if m["role"] == "tool"]
        assert '"amount": 50' in tool["content"] and "99999" not in tool["content"]
        assert tool["metadata"]["approval"]["edited"] is True


@pytest.mark.parametrize("backend", BACKENDS)  # (a restart on the same store)
async def test_consent_added_after_a_round_ran_is_asked_when_it_resumes(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """get_time was a client tool when the mixed round ran; the operator then binds it to
    a server tool that needs consent. PUT head onto the round + `"results": []`: get_weather
    runs, get_time waits for a decision (listed in `pending_approvals` with the binding's
    message) instead of running."""
    async with state_url_for(backend, tmp_path) as url:
        async with tool_app(settings_factory, tmp_path, MOCK_WEATHER, state_url=url) as client:
            cid = await weather_conv(client, "mixed")
            first = await turn(client, cid, "weather and time in Paris?")
            assert [c["id"] for c in first["pending_tool_calls"]] == ["call_2"], first
            r = await client.post(
                f"/conversations/{cid}/tool-results",
                json={"results": [{"tool_call_id": "call_2", "output": "14:00"}]},
            )
            assert r.status_code == 200 and r.json()["status"] == "completed", r.text
            asst = first["messages"][1]
        async with tool_app(
            settings_factory, tmp_path, TIME_NEEDS_CONSENT, state_url=url
        ) as client:
            r = await client.put(f"/conversations/{cid}/head", json={"message_id": asst["id"]})
            assert r.status_code == 200 and r.json()["status"] == "requires_action", r.text

            r = await client.post(f"/conversations/{cid}/tool-results", json={"results": []})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["status"] == "requires_action", body
            tools = [m for m in body["messages"] if m["role"] == "tool"]
            assert [m["tool_call_id"] for m in tools] == ["call_1"], tools  # get_time did not run
            [pending] = body["pending_approvals"]
            assert pending["tool_call_id"] == "call_2" and pending["message"] == TIME_CONSENT
            assert (await client.get(f"/conversations/{cid}")).json()["status"] == (
                "requires_action"
            )

            r = await client.post(
                f"/conversations/{cid}/tool-approvals",
                json={"decisions": [{"tool_call_id": "call_2", "approve": True}]},
            )
            assert r.status_code == 200 and r.json()["status"] == "completed", r.text
            [ran] = [m for m in r.json()["messages"] if m["role"] == "tool"]
            assert ran["tool_call_id"] == "call_2" and ran["metadata"]["approval"]["approved"]
