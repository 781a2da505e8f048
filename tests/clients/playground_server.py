"""The uvicorn server both playground browser tests use (one start for both: the browser
suite stays short): SQLite state, mock delay on, a runtime config binding the hitl pack's
process_refund to an exec tool behind consent (the tools pack's get_time stays unbound, so
the page answers it as a client tool), scripted mock scenarios, the two fixture packs, and
the conversations the tests open (one with context strategy summarize)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import yaml

from tests.api.tool_loop_helpers import HITL_PACK, SCENARIOS, TOOLS_PACK, exec_tool, runtime_config
from tests.e2e.server import uvicorn_server

MOCK_DELAY_MS = 40
PAGER_CONVERSATIONS = 13  # the page lists 10 at a time
CONSENT = "Refund this order?"
SUMMARIZE = {"strategy": "summarize", "max_input_tokens": 1700}
CLOCK = {"turns": {1: {"tool_calls": [{"name": "get_time", "arguments": {"timezone": "UTC"}}]},
                   2: {"response": "It is 14:00 now."}}}  # fmt: skip


@dataclass
class PlaygroundServer:
    url: str
    conversations: dict[str, dict[str, str]] = field(default_factory=dict)


def _create(url: str, pack: str, prompt: str, user: str, scenario: str | None = None) -> str:
    body: dict[str, object] = {"pack_id": pack, "prompt_name": prompt, "user_id": user}
    if scenario == "summarize":
        body["context_policy"] = SUMMARIZE
    elif scenario:
        body["metadata"] = {"mock_scenario": scenario}
    r = httpx.post(f"{url}/conversations", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture(scope="session")
def playground_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaygroundServer]:
    data = tmp_path_factory.mktemp("playground")
    tools = {"process_refund": {**exec_tool("weather"), "client": {"consent": {
        "required": True, "message": CONSENT}}}}  # fmt: skip
    (data / "runtime.yaml").write_text(runtime_config(tools))
    scenarios = {"scenarios": {**SCENARIOS["scenarios"], "clock": CLOCK}}
    (data / "mock-responses.yaml").write_text(yaml.safe_dump(scenarios))
    env = {
        "PARLEY_STATE_URL": f"sqlite+aiosqlite:///{data}/parley.db",
        "PARLEY_MEDIA_DIR": str(data / "media"),
        "PARLEY_MOCK_DELAY_MS": str(MOCK_DELAY_MS),
        "PARLEY_RUNTIME_CONFIG": str(data / "runtime.yaml"),
        "PARLEY_MOCK_SCENARIOS": str(data / "mock-responses.yaml"),
    }
    with uvicorn_server(env) as url:
        for pack in (TOOLS_PACK, HITL_PACK):
            r = httpx.post(f"{url}/packs", json=json.loads(pack.read_text()))
            assert r.status_code in (200, 201), r.text
        for _ in range(PAGER_CONVERSATIONS):
            _create(url, "general-assistant", "chat", "pg-pager")
        server = PlaygroundServer(url)
        for name, pack, prompt, scenario in [
            ("tree", "general-assistant", "chat", None),
            ("refund", "hitl-example", "refund_agent", "refund"),
            ("reject", "hitl-example", "refund_agent", "refund"),
            ("clock", "tools-example", "assistant", "clock"),
            ("summary", "general-assistant", "chat", "summarize"),
        ]:
            user = f"pg-{name}"
            server.conversations[name] = {
                "id": _create(url, pack, prompt, user, scenario),
                "user": user,
            }
        yield server
