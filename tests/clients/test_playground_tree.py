"""GET /playground in a real browser, the parts after the chat (tests/clients/ts/
playground_tree.ts): the message tree (two siblings, the arrows switch the page between
their branches, a regenerated reply, rollbacks to a message and to a checkpoint, a fork),
a tool call approved with edited arguments (the card goes from pending to done, also
across a reload) and one rejected with a reason, a client tool answered from the form,
and the context bar (after Compact wrote a summary) checked against GET .../context.
Screenshots of each step are left under test-output/playground/ (git-ignored)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.playground_server import PlaygroundServer
from tests.clients.test_playground import SHOTS
from tests.clients.tools import chromium, node_tools, run

pytestmark = pytest.mark.e2e


def test_tree_tools_and_context_in_a_browser(
    playground_server: PlaygroundServer, browser_tmp: Path
) -> None:
    url, convs = playground_server.url, playground_server.conversations
    out = run(
        ["node", "run.mjs", "playground_tree.ts"],
        cwd=node_tools(),
        env={
            "PARLEY_URL": url,
            "CHROMIUM": str(chromium()),
            "TMPDIR": str(browser_tmp),
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
    regenerated = "regenerateReply" in operations
    assert ("regenerated" in result) is regenerated
    if regenerated:  # a sibling reply: "2 / 2" on it, a third branch
        assert result["regenerated"] == {**result["edited"], "branches": 3}
    head = httpx.get(f"{url}/conversations/{convs['tree']['id']}/messages").json()["data"]
    assert [m["content"] for m in head] == [
        "first question", "echo: first question", "second, edited", "echo: second, edited"
    ]  # fmt: skip
    assert len(result["checkpoints"]) == 1 and result["checkpoints"][0].startswith("before fork")
    assert result["rolledBack"] == ["first question", "echo: first question"]
    assert result["restored"] == result["edited"]  # the checkpoint's head, arrows and all

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

    assert result["rejected"] == {
        "state": "error",
        "tool": "rejected: over the limit",
        "reply": "Your refund is done.",  # the scripted turn 2 answers whatever the result
    }

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
    assert budget["summary"] > 0 and budget["system"] > 0  # compacted: the summary stands in
    drawn = {s["section"]: s["width"] for s in context["segments"]}
    assert set(drawn) == {s for s in sections if budget[s] > 0}
    scale = max(budget["input_budget"], budget["total"])
    for section, width in drawn.items():
        assert width == pytest.approx(context["barWidth"] * budget[section] / scale, abs=1.5)
    assert context["included"] == len(preview["included_message_ids"])
    assert context["dropped"] == preview["dropped"] == 4  # the two turns, summarized
    summary = preview["summary"]
    assert context["summary"] == (
        f"summary in use ({summary['tokens']} tokens, up to message "
        f"{summary['covers_message_id']}): {summary['text']}"
    )
    assert "user: fact: the grass is blue" in summary["text"]  # the mock keeps fact lines

    # the edit form and the regenerated reply are one more each
    assert len(result["steps"]) == 10 + result["editShown"] + regenerated
