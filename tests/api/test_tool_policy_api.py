"""A prompt's `tool_policy` limits are applied across the rounds of a turn (client-side
tools: each `tool-results` submission continues the turn)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.settings import Settings
from tests.api.helpers import create_conv, send
from tests.conftest import REPO, running_app

SCENARIOS = """
scenarios:
  greedy:
    turns:
      1:
        tool_calls:
          - {name: lookup_order, arguments: {order_id: "A-1"}}
          - {name: lookup_order, arguments: {order_id: "A-2"}}
          - {name: lookup_order, arguments: {order_id: "A-3"}}
      2:
        tool_calls:
          - {name: lookup_order, arguments: {order_id: "B-1"}}
          - {name: lookup_order, arguments: {order_id: "B-2"}}
      3:
        response: "final answer"
        tool_calls:
          - {name: lookup_order, arguments: {order_id: "C-1"}}
"""


def _pack(policy: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((REPO / "packs" / "customer-support.pack.json").read_text())
    doc["id"], doc["version"] = "policy-test", "1.0.0"
    doc["prompts"]["support"]["tool_policy"] = policy
    return doc


async def _results(client: Any, conv_id: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    r = await client.post(
        f"/conversations/{conv_id}/tool-results",
        json={"results": [{"tool_call_id": c["id"], "output": "ok"} for c in calls]},
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_max_tool_calls_and_max_rounds(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    scenarios = tmp_path / "mock-responses.yaml"
    scenarios.write_text(SCENARIOS)
    async with running_app(settings_factory(mock_scenarios=scenarios)) as client:
        policy = {"tool_choice": "auto", "max_rounds": 2, "max_tool_calls_per_turn": 4}
        assert (await client.post("/packs", json=_pack(policy))).status_code == 201
        conv = await create_conv(
            client,
            pack_id="policy-test",
            prompt_name="support",
            variables={"company_name": "Acme"},
            metadata={"mock_scenario": "greedy"},
        )
        first = await send(client, conv["id"], "where are my orders?")
        assert len(first["pending_tool_calls"]) == 3  # round 1: 3 of the 4 calls of the turn

        second = await _results(client, conv["id"], first["pending_tool_calls"])
        # round 2 asked for 2 more: only 1 fits the per-turn budget
        assert [c["arguments"]["order_id"] for c in second["pending_tool_calls"]] == ["B-1"]
        assert second["reply"]["tool_calls"] == second["pending_tool_calls"]

        third = await _results(client, conv["id"], second["pending_tool_calls"])
        # past max_rounds: tools are off for the provider and its tool call is dropped
        assert third["status"] == "completed" and third["pending_tool_calls"] == []
        assert third["reply"]["content"] == "final answer"
        assert third["reply"]["tool_calls"] == [] and third["finish_reason"] == "tool_limit"
        assert third["reply"]["metadata"]["tool_limit"] == "max_rounds"
        ctx_messages = (await client.get(f"/conversations/{conv['id']}/messages")).json()
        assert [m["role"] for m in ctx_messages["data"]][-1] == "assistant"

        # a new user message starts a new turn with a fresh budget
        again = await send(client, conv["id"], "and now?")
        assert again["status"] == "completed"
