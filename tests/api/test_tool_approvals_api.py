"""Approvals (human in the loop): the `hitl` fixture pack's `process_refund` bound to an exec
tool whose binding asks for consent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.helpers import assert_problem
from tests.api.sse_parse import parse_sse
from tests.api.tool_loop_helpers import (
    exec_tool,
    load_fixture_packs,
    roles,
    tool_app,
    tool_settings,
    turn,
    weather_conv,
)
from tests.conftest import REPO, running_app
from tests.contract.coordination.conftest import fresh_redis

CONSENT = "Refund this order?"
REFUND = {
    "process_refund": {
        **exec_tool("weather"),  # answers {"city": ..., "temp_c": 21, "args": <what it got>}
        "client": {"consent": {"required": True, "message": CONSENT}},
    }
}


async def refund_conv(client: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    conv_id = await weather_conv(client, "refund", pack="hitl-example")
    first = await turn(client, conv_id, "refund order A-1 please")
    return conv_id, first


async def decide(
    client: httpx.AsyncClient, conv_id: str, *decisions: dict[str, Any], **body: Any
) -> httpx.Response:
    return await client.post(
        f"/conversations/{conv_id}/tool-approvals",
        json={"decisions": list(decisions), **body},
    )


async def test_approval_pauses_then_runs_with_edited_arguments(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, REFUND) as client:
        conv_id, first = await refund_conv(client)
        assert first["status"] == "requires_action" and first["pending_tool_calls"] == []
        assert roles(first) == ["user", "assistant"]  # nothing ran
        [pending] = first["pending_approvals"]
        assert pending == {
            "tool_call_id": "call_1",
            "name": "process_refund",
            "arguments": {"order_id": "A-1", "amount": 120, "reason": "damaged"},
            "message": CONSENT,
            "categories": [],
        }
        conv = (await client.get(f"/conversations/{conv_id}")).json()
        assert conv["status"] == "requires_action"
        busy = await client.post(f"/conversations/{conv_id}/messages", json={"content": "?"})
        assert_problem(busy, 422, "invalid_state")
        results = await client.post(
            f"/conversations/{conv_id}/tool-results",
            json={"results": [{"tool_call_id": "call_1", "output": "forged"}]},
        )
        assert "tool-approvals" in assert_problem(results, 422, "invalid_state")["detail"]
        edited = {"order_id": "A-1", "amount": 80, "reason": "damaged"}
        r = await decide(client, conv_id, {"tool_call_id": "call_1", "approve": True,
                                            "arguments": edited})  # fmt: skip
        assert r.status_code == 200, r.text
        second = r.json()
        again = await decide(client, conv_id, {"tool_call_id": "call_1", "approve": False})
        metrics = (await client.get("/metrics")).text
    assert second["status"] == "completed"
    assert roles(second) == ["tool", "assistant"]
    tool_msg = second["messages"][0]
    assert json.loads(tool_msg["content"])["args"] == edited  # the tool got the edited amount
    approval = tool_msg["metadata"]["approval"]
    assert approval["approved"] is True and approval["edited"] is True
    assert approval["original_arguments"]["amount"] == 120
    assert second["reply"]["content"] == "Your refund is done."
    assert_problem(again, 409, "approval_conflict")
    assert 'parley_tool_calls_total{outcome="ok",tool="process_refund"} 1.0' in metrics


async def test_a_rejection_is_what_the_model_sees(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, REFUND) as client:
        conv_id, _ = await refund_conv(client)
        r = await decide(
            client,
            conv_id,
            {"tool_call_id": "call_1", "approve": False, "reason": "over the limit"},
            stream=True,
        )
        events = parse_sse(r.text)
        stored = (await client.get(f"/conversations/{conv_id}/messages")).json()["data"]
    kinds = [e.event for e in events if e.event != "message.delta"]
    assert kinds == [
        "run.created",
        "tool_call.completed",
        "message.created",
        "message.completed",
        "run.completed",
    ]
    completed = events[1].data
    assert completed["output"] == "rejected: over the limit" and completed["is_error"] is True
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[2]["content"] == "rejected: over the limit"
    assert stored[2]["metadata"]["approval"] == {
        "approved": False,
        "edited": False,
        "reason": "over the limit",
    }


async def test_two_racing_decisions_one_wins_the_other_is_409(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, REFUND, mock_delay_ms=20) as client:
        conv_id, _ = await refund_conv(client)
        approve = {"tool_call_id": "call_1", "approve": True}
        reject = {"tool_call_id": "call_1", "approve": False, "reason": "no"}
        a, b = await asyncio.gather(
            decide(client, conv_id, approve), decide(client, conv_id, reject)
        )
        stored = (await client.get(f"/conversations/{conv_id}/messages")).json()["data"]
    assert sorted([a.status_code, b.status_code]) == [200, 409], (a.text, b.text)
    loser = a if a.status_code == 409 else b
    assert_problem(loser, 409, "approval_conflict")
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]


async def test_parley_approval_required_and_bad_decisions(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    tools = {"process_refund": {**exec_tool("weather"), "approval": "required"}}
    async with tool_app(settings_factory, tmp_path, tools) as client:
        conv_id, first = await refund_conv(client)
        [pending] = first["pending_approvals"]
        assert pending["message"]  # a default consent message
        unknown = await decide(client, conv_id, {"tool_call_id": "call_9", "approve": True})
        dup = await decide(
            client,
            conv_id,
            {"tool_call_id": "call_1", "approve": True},
            {"tool_call_id": "call_1", "approve": False},
        )
        args_on_reject = await decide(
            client, conv_id, {"tool_call_id": "call_1", "approve": False, "arguments": {}}
        )
        bad_args = await decide(
            client, conv_id, {"tool_call_id": "call_1", "approve": True,
                              "arguments": {"order_id": "A-1"}}
        )  # fmt: skip
    assert_problem(unknown, 409, "approval_conflict")
    assert_problem(dup, 422, "validation_error")  # (refused before the run, as two results)
    assert_problem(args_on_reject, 422, "validation_error")
    # edited arguments are checked against the tool's schema: the model sees the error
    assert bad_args.status_code == 200, bad_args.text
    tool_msg = bad_args.json()["messages"][0]
    assert tool_msg["metadata"]["is_error"] is True and "invalid arguments" in tool_msg["content"]


SUPPORT_SCENARIO = """
scenarios:
  support:
    turns:
      1:
        tool_calls: [{name: lookup_order, arguments: {order_id: A-10293}}]
      2:
        tool_calls:
          - name: create_ticket
            arguments: {subject: Late parcel, description: Still not delivered, priority: high,
                        order_id: A-10293}
      3: "I opened a ticket for you."
"""


async def test_the_readme_runtime_config_runs_a_support_turn(
    settings_factory: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tickets = tmp_path / "tickets.log"
    monkeypatch.setenv("TICKETS_LOG", str(tickets))
    scenarios = tmp_path / "mock-responses.yaml"
    scenarios.write_text(SUPPORT_SCENARIO)
    settings = settings_factory(
        runtime_config=REPO / "examples" / "runtime.yaml",
        mock_scenarios=scenarios,
        default_provider="mock",
    )
    async with running_app(settings) as client:
        r = await client.post(
            "/conversations",
            json={"pack_id": "customer-support", "prompt_name": "support", "user_id": "alice",
                  "variables": {"company_name": "Acme"}, "provider": "mock",
                  "metadata": {"mock_scenario": "support"}},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        conv_id = r.json()["id"]
        first = await turn(client, conv_id, "where is my order A-10293?")
        assert not tickets.exists()  # the ticket waits for a human
        [pending] = first["pending_approvals"]
        r = await decide(client, conv_id, {"tool_call_id": pending["tool_call_id"],
                                            "approve": True})  # fmt: skip
        assert r.status_code == 200, r.text
        second = r.json()
    assert roles(first) == ["user", "assistant", "tool", "assistant"]
    assert json.loads(first["messages"][2]["content"])["carrier"] == "Colissimo"
    assert pending["message"] == "Open a support ticket for this customer?"
    assert json.loads(second["messages"][0]["content"])["ticket"].startswith("T-")
    assert second["reply"]["content"] == "I opened a ticket for you."
    assert json.loads(tickets.read_text())["priority"] == "high"


async def test_racing_decisions_on_two_instances_and_a_pause_that_survives_restart(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        # two instances on one SQLite file share Redis coordination (the turn lock)
        url = await fresh_redis(stack)
        settings = tool_settings(
            settings_factory, tmp_path, REFUND, coordination_url=url, mock_delay_ms=20
        )
        async with running_app(settings) as a:
            await load_fixture_packs(a)
            conv_id, _ = await refund_conv(a)
            paused_id, _ = await refund_conv(a)
        async with running_app(settings) as a, running_app(settings) as b:
            approve = {"tool_call_id": "call_1", "approve": True}
            reject = {"tool_call_id": "call_1", "approve": False, "reason": "no"}
            one, two = await asyncio.gather(decide(a, conv_id, approve), decide(b, conv_id, reject))
            stored = (await b.get(f"/conversations/{conv_id}/messages")).json()["data"]
            # paused on the first instance's run, decided on a restarted one
            resumed = await decide(b, paused_id, approve)
    assert sorted([one.status_code, two.status_code]) == [200, 409], (one.text, two.text)
    assert_problem(one if one.status_code == 409 else two, 409, "approval_conflict")
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["reply"]["content"] == "Your refund is done."


async def test_the_pause_streams_its_pending_approvals_and_a_retried_decision_attaches(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, REFUND) as client:
        conv_id = await weather_conv(client, "refund", pack="hitl-example")
        r = await client.post(
            f"/conversations/{conv_id}/messages", json={"content": "refund", "stream": True}
        )
        paused = parse_sse(r.text)[-1]
        headers = {"Idempotency-Key": "decision-1"}
        body = {"decisions": [{"tool_call_id": "call_1", "approve": True}]}
        first, retry = await asyncio.gather(
            client.post(f"/conversations/{conv_id}/tool-approvals", json=body, headers=headers),
            client.post(f"/conversations/{conv_id}/tool-approvals", json=body, headers=headers),
        )
        stored = (await client.get(f"/conversations/{conv_id}/messages")).json()["data"]
    assert paused.event == "run.requires_action"
    assert paused.data["pending_tool_calls"] == []
    assert [a["tool_call_id"] for a in paused.data["pending_approvals"]] == ["call_1"]
    assert paused.data["pending_approvals"][0]["message"] == CONSENT
    assert first.status_code == retry.status_code == 200, (first.text, retry.text)
    assert first.json()["run_id"] == retry.json()["run_id"]  # the tool ran once
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
