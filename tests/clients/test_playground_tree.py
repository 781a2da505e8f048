"""GET /playground in a real browser, the parts after the chat (tests/clients/ts/
playground_tree.ts): the message tree (two siblings, the arrows switch the page between
their branches, a checkpoint, a fork), a tool call approved with edited arguments (the
card goes from pending to done, also across a reload), a client tool answered from the
form, and the context bar checked against GET .../context. Screenshots of each step are
left under test-output/playground/ (git-ignored)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.api.tool_loop_helpers import HITL_PACK, SCENARIOS, TOOLS_PACK, exec_tool, runtime_config
from tests.clients.test_playground import SHOTS
from tests.clients.tools import chromium, node_tools, run
from tests.e2e.server import uvicorn_server

pytestmark = pytest.mark.e2e
CONSENT = "Refund this order?"
CLOCK = {"turns": {1: {"tool_calls": [{"name": "get_time", "arguments": {"timezone": "UTC"}}]},
                   2: {"response": "It is 14:00 now."}}}  # fmt: skip


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """A server whose runtime config binds the hitl pack's process_refund to an exec tool
    behind consent; get_time of the tools pack stays unbound, so the client answers it."""
    data = tmp_path_factory.mktemp("playground-tree")
    tools = {"process_refund": {**exec_tool("weather"), "client": {"consent": {
        "required": True, "message": CONSENT}}}}  # fmt: skip
    (data / "runtime.yaml").write_text(runtime_config(tools))
    scenarios = {"scenarios": {**SCENARIOS["scenarios"], "clock": CLOCK}}
    (data / "mock-responses.yaml").write_text(yaml.safe_dump(scenarios))
    env = {
        "PARLEY_STATE_URL": f"sqlite+aiosqlite:///{data}/parley.db",
        "PARLEY_MEDIA_DIR": str(data / "media"),
        "PARLEY_RUNTIME_CONFIG": str(data / "runtime.yaml"),
        "PARLEY_MOCK_SCENARIOS": str(data / "mock-responses.yaml"),
    }
    with uvicorn_server(env) as url:
        for pack in (TOOLS_PACK, HITL_PACK):
            r = httpx.post(f"{url}/packs", json=json.loads(pack.read_text()))
            assert r.status_code in (200, 201), r.text
        convs = {}
        for name, pack, prompt, scenario in [
            ("tree", "general-assistant", "chat", None),
            ("refund", "hitl-example", "refund_agent", "refund"),
            ("clock", "tools-example", "assistant", "clock"),
        ]:
            user = f"pg-{name}"
            body = {"pack_id": pack, "prompt_name": prompt, "user_id": user}
            if scenario:
                body["metadata"] = {"mock_scenario": scenario}
            r = httpx.post(f"{url}/conversations", json=body)
            assert r.status_code == 201, r.text
            convs[name] = {"id": r.json()["id"], "user": user}
        yield url, convs


def test_tree_tools_and_context_in_a_browser(
    tool_server: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, convs = tool_server
    out = run(
        ["node", "run.mjs", "playground_tree.ts"],
        cwd=node_tools(),
        env={
            "PARLEY_URL": url,
            "CHROMIUM": str(chromium()),
            "TMPDIR": str(tmp_path),
            "SHOTS": str(SHOTS),
            "CONVERSATIONS": json.dumps(convs),
        },
        timeout=180,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "tree-result.json").write_text(json.dumps(result, indent=1))
    assert "error" not in result, result.get("error")
    assert result["console"] == []
    operations = {
        op["operationId"]
        for ops in httpx.get(f"{url}/openapi.json").json()["paths"].values()
        for op in ops.values()
    }
    # edit is shown exactly when the service has it; without it a rollback makes the sibling
    assert result["editShown"] is ("editMessage" in operations)

    # the arrows switch the page between the two branches of the second question
    assert result["edited"]["users"] == ["first question", "second, edited"]
    assert result["edited"]["replies"] == ["echo: first question", "echo: second, edited"]
    assert result["previous"]["users"] == ["first question", "second question"]
    assert result["previous"]["replies"] == ["echo: first question", "echo: second question"]
    assert result["previous"]["prevDisabled"] and not result["previous"]["nextDisabled"]
    assert result["back"] == result["edited"]
    assert (result["branches"], result["headBranches"]) == (2, 1)
    head = httpx.get(f"{url}/conversations/{convs['tree']['id']}/messages").json()["data"]
    assert [m["content"] for m in head] == [
        "first question", "echo: first question", "second, edited", "echo: second, edited"
    ]  # fmt: skip
    assert len(result["checkpoints"]) == 1 and result["checkpoints"][0].startswith("before fork")

    fork = result["fork"]
    assert fork["conv"] != convs["tree"]["id"]
    assert fork["forkedFrom"] == f"forked from {convs['tree']['id']}"
    assert fork["messages"] == ["first question", "echo: first question"]

    assert result["pending"] == {"state": "pending", "label": "waiting for approval"}
    assert result["pendingAfterReload"] == "pending"
    approved = result["approved"]
    assert approved["state"] == "done" and approved["buttons"] == 0
    assert approved["reply"] == "Your refund is done."
    assert '"amount": 80' in approved["tool"] or '"amount":80' in approved["tool"], approved

    client = result["client"]
    assert client["state"] == "done"
    assert "14:00" in client["tool"] and client["reply"] == "It is 14:00 now."

    # the numbers of the bar are the service's
    context = result["context"]
    preview = httpx.get(f"{url}/conversations/{context['conv']}/context").json()
    budget = preview["budget"]
    sections = ["system", "context_items", "summary", "history", "pending", "tools"]
    assert context["sections"] == {
        **{f"ctx-{s}": budget[s] for s in sections},
        "ctx-total": budget["total"],
    }
    assert budget["history"] > 0 and budget["system"] > 0
    drawn = {s["section"]: s["width"] for s in context["segments"]}
    assert set(drawn) == {s for s in sections if budget[s] > 0}
    scale = max(budget["input_budget"], budget["total"])
    for section, width in drawn.items():
        assert width == pytest.approx(context["barWidth"] * budget[section] / scale, abs=1.5)
    assert context["included"] == len(preview["included_message_ids"]) == 4
    assert context["dropped"] == preview["dropped"] == 0
    assert context["summary"] == "no summary in use"

    assert len(result["steps"]) == 9 + result["editShown"]  # the edit form is one more
