"""Set-up of the tool-loop API tests: a RuntimeConfig written for the test, the fixture
packs uploaded, the mock provider scripted through a PromptKit mock-responses file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.settings import Settings
from tests.api.backends import state_url_for
from tests.conftest import FIXTURE_PACKS, running_app
from tests.unit.tools.helpers import PEERS, PYTHON

TOOLS_PACK = FIXTURE_PACKS / "sdk__examples__tools__tools.pack.json"
HITL_PACK = FIXTURE_PACKS / "sdk__examples__hitl__hitl.pack.json"
SCRIPT = str(PEERS / "tool_script.py")
MCP_SERVER = str(PEERS / "mcp_server.py")
PARIS = {"city": "Paris", "country": "FR"}
MOCK_WEATHER = {"get_weather": {"mock_result": {"temp": 21, "summary": "sunny"}}}


def weather_turns(rounds: int, *, same: bool = False) -> dict[int, Any]:
    """`rounds` turns each calling get_weather (a different city unless `same`)."""
    return {
        n: {"tool_calls": [{"name": "get_weather", "arguments": PARIS if same else {
            "city": f"City{n}", "country": "FR"}}]}
        for n in range(1, rounds + 1)
    }  # fmt: skip


SCENARIOS: dict[str, Any] = {
    "scenarios": {
        "weather": {
            "turns": {
                1: {"tool_calls": [{"name": "get_weather", "arguments": PARIS}]},
                2: {"response": "It is sunny in Paris."},
            }
        },
        "two_cities": {
            "turns": {
                1: {
                    "tool_calls": [
                        {"name": "get_weather", "arguments": PARIS},
                        {"name": "get_weather", "arguments": {"city": "Rome", "country": "IT"}},
                    ]
                },
                2: {"response": "Both answered."},
            }
        },
        "mixed": {
            "turns": {
                1: {
                    "tool_calls": [
                        {"name": "get_weather", "arguments": PARIS},
                        {"name": "get_time", "arguments": {"timezone": "Europe/Paris"}},
                    ]
                },
                2: {"response": "Weather and time known."},
            }
        },
        "unknown_tool": {
            "turns": {
                1: {"tool_calls": [{"name": "launch_rocket", "arguments": {}}]},
                2: {"response": "I cannot do that."},
            }
        },
        "forever": {"turns": weather_turns(12)},
        "mcp_echo": {
            "turns": {
                1: {"tool_calls": [{"name": "mcp__weather__echo", "arguments": {"text": "hi"}}]},
                2: {"response": "echoed"},
            }
        },
        "mcp_die": {
            "turns": {
                1: {"tool_calls": [{"name": "mcp__weather__die", "arguments": {}}]},
                2: {"response": "not allowed"},
            }
        },
        "repeat": {"turns": {**weather_turns(6, same=True), 7: {"response": "Giving up."}}},
        "refund": {
            "turns": {
                1: {
                    "tool_calls": [
                        {
                            "name": "process_refund",
                            "arguments": {"order_id": "A-1", "amount": 120, "reason": "damaged"},
                        }
                    ]
                },
                2: {"response": "Your refund is done."},
            }
        },
    }
}


def runtime_config(tools: dict[str, Any], mcp_servers: list[dict[str, Any]] | None = None) -> str:
    spec: dict[str, Any] = {"tools": tools}
    if mcp_servers:
        spec["mcp_servers"] = mcp_servers
    return yaml.safe_dump(
        {
            "apiVersion": "promptkit.altairalabs.ai/v1alpha1",
            "kind": "RuntimeConfig",
            "metadata": {"name": "tool-loop-test"},
            "spec": spec,
        }
    )


def live_weather(url: str) -> dict[str, Any]:
    return {
        "http": {
            "url": url + "/v1/weather/{{.country}}",
            "method": "GET",
            "headers_from_env": ["X-Api-Key=PARLEY_TEST_WEATHER_KEY"],
            "timeout_ms": 5000,
            "request": {
                "query_params": ["city"],
                "static_query": {"units": "metric"},
                "static_headers": {"X-Client": "parley"},
            },
            "response": {"body_mapping": "{temp: current.temp_c, summary: current.summary}"},
        }
    }


def exec_tool(mode: str, *extra: str, **binding: Any) -> dict[str, Any]:
    return {"exec": {"command": PYTHON, "args": [SCRIPT, mode, *extra], **binding}}


def mcp_stdio() -> dict[str, Any]:
    return {"name": "weather", "command": PYTHON, "args": [MCP_SERVER, "stdio"]}


def tool_settings(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    tools: dict[str, Any],
    *,
    mcp_servers: list[dict[str, Any]] | None = None,
    **settings: Any,
) -> Settings:
    config = tmp_path / "runtime.yaml"
    config.write_text(runtime_config(tools, mcp_servers))
    scenarios = tmp_path / "mock-responses.yaml"
    scenarios.write_text(yaml.safe_dump(SCENARIOS))
    values: dict[str, Any] = {
        "runtime_config": config,
        "mock_scenarios": scenarios,
        "tool_allowed_networks": ["127.0.0.0/8"],
        **settings,
    }
    return settings_factory(**values)


async def load_fixture_packs(client: httpx.AsyncClient) -> None:
    for pack in (TOOLS_PACK, HITL_PACK):
        r = await client.post("/packs", json=json.loads(pack.read_text()))
        assert r.status_code in (200, 201), r.text


@asynccontextmanager
async def tool_app(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    tools: dict[str, Any],
    *,
    mcp_servers: list[dict[str, Any]] | None = None,
    provider_client: httpx.AsyncClient | None = None,
    **settings: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    values = tool_settings(settings_factory, tmp_path, tools, mcp_servers=mcp_servers, **settings)
    async with running_app(values, provider_client=provider_client) as client:
        await load_fixture_packs(client)
        yield client


@asynccontextmanager
async def mock_weather_app(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """`tool_app` on `backend`'s store, get_weather mocked (MOCK_WEATHER)."""
    async with (
        state_url_for(backend, tmp_path) as url,
        tool_app(settings_factory, tmp_path, MOCK_WEATHER, state_url=url) as client,
    ):
        yield client


async def weather_conv(
    client: httpx.AsyncClient, scenario: str, *, pack: str = "tools-example"
) -> str:
    prompt = "refund_agent" if pack == "hitl-example" else "assistant"
    r = await client.post(
        "/conversations",
        json={
            "pack_id": pack,
            "prompt_name": prompt,
            "user_id": "alice",
            "metadata": {"mock_scenario": scenario},
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def turn(client: httpx.AsyncClient, conv_id: str, text: str, **body: Any) -> dict[str, Any]:
    r = await client.post(f"/conversations/{conv_id}/messages", json={"content": text, **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def roles(turn_body: dict[str, Any]) -> list[str]:
    return [m["role"] for m in turn_body["messages"]]
