"""MCP tools through the `mcp` SDK against a real MCP server (peers/mcp_server.py) over
stdio, Streamable HTTP and SSE on loopback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from app.tools import ToolRegistry
from tests.e2e.server import free_port
from tests.unit.tools.helpers import PEERS, PYTHON, checked, pack_with, registry

SERVER = str(PEERS / "mcp_server.py")


def stdio_server(**extra: Any) -> dict[str, Any]:
    return {
        "name": "weather",
        "command": PYTHON,
        "args": [SERVER, "stdio"],
        "tool_filter": {"blocklist": ["secret_*"]},
        **extra,
    }


async def started(spec: dict[str, Any]) -> ToolRegistry:
    tools = registry(checked(spec), mcp_ping_interval_s=0.5)
    for connection in tools.mcp.values():
        connection.reconnect_delays_s = (0.1,)
    await tools.start(connect_timeout_s=30)
    return tools


@pytest.fixture
async def stdio_tools() -> AsyncIterator[ToolRegistry]:
    tools = await started({"mcp_servers": [stdio_server()]})
    yield tools
    await tools.aclose()


WILDCARD_PACK = pack_with({}, ["mcp__weather__*"])


async def test_stdio_tools_are_discovered_filtered_and_selected_by_wildcard(
    stdio_tools: ToolRegistry,
) -> None:
    toolset = stdio_tools.toolset(WILDCARD_PACK, "main")
    names = [t.name for t in toolset]
    assert set(names) == {
        "mcp__weather__get_weather",
        "mcp__weather__echo",
        "mcp__weather__fail",
        "mcp__weather__nothing",
        "mcp__weather__die",
    }
    spec = toolset.get("mcp__weather__get_weather").spec  # type: ignore[union-attr]
    assert spec.description == "Get current weather for a city"
    assert set(spec.parameters["required"]) == {"city", "country"}
    outcome = await toolset.execute("mcp__weather__get_weather", {"city": "Paris", "country": "FR"})
    assert (outcome.output, outcome.is_error) == ("sunny in Paris, FR", False)


async def test_tool_errors_and_invalid_arguments(stdio_tools: ToolRegistry) -> None:
    toolset = stdio_tools.toolset(WILDCARD_PACK, "main")
    failed = await toolset.execute("mcp__weather__fail", {"reason": "test"})
    assert failed.is_error and "failed on purpose: test" in failed.output
    invalid = await toolset.execute("mcp__weather__echo", {})
    assert invalid.is_error and "invalid arguments" in invalid.output
    blocked = await toolset.execute("mcp__weather__secret_tool", {})
    assert blocked.is_error and "unknown tool" in blocked.output


async def test_exact_names_blocklists_and_mode_mcp_bindings() -> None:
    tools = await started(
        {
            "mcp_servers": [stdio_server()],
            "tools": {"get_weather": {"mode": "mcp"}},
        }
    )
    try:
        pack = pack_with(
            {
                "get_weather": {
                    "description": "Weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                    },
                }
            },
            ["get_weather", "mcp__weather__echo", "mcp__weather__*"],
            blocklist=["mcp__weather__die", "mcp__weather__f*"],
        )
        toolset = tools.toolset(pack, "main")
        assert [t.name for t in toolset] == [
            "get_weather",
            "mcp__weather__echo",
            "mcp__weather__get_weather",
            "mcp__weather__nothing",
        ]
        bound = await toolset.execute("get_weather", {"city": "Rome", "country": "IT"})
        assert bound.output == "sunny in Rome, IT"
    finally:
        await tools.aclose()


async def test_a_dead_server_fails_its_calls_then_reconnects(stdio_tools: ToolRegistry) -> None:
    connection = stdio_tools.mcp["weather"]
    first = connection.connects
    toolset = stdio_tools.toolset(WILDCARD_PACK, "main")
    died = await toolset.execute("mcp__weather__die", {})
    assert died.is_error
    again = await toolset.execute("mcp__weather__echo", {"text": "hi"})
    # either the server is still down (a tool error) or it was already rediscovered
    assert again.is_error or again.output == "hi"
    for _ in range(300):
        if connection.connects > first and connection.connected:
            break
        await asyncio.sleep(0.05)
    assert connection.connects > first and connection.connected
    fresh = stdio_tools.toolset(WILDCARD_PACK, "main")
    assert (await fresh.execute("mcp__weather__echo", {"text": "back"})).output == "back"


async def test_a_server_that_is_down_at_start_up_does_not_stop_the_registry() -> None:
    port = free_port()
    tools = await started(
        {
            "mcp_servers": [
                {
                    "name": "down",
                    "url": f"http://127.0.0.1:{port}/mcp",
                    "transport": "streamable_http",
                    "timeout_ms": 2000,
                },
            ]
        }
    )
    try:
        connection = tools.mcp["down"]
        assert not connection.connected and connection.last_error
        toolset = tools.toolset(pack_with({}, ["mcp__down__*"]), "main")
        assert len(toolset) == 0
    finally:
        await tools.aclose()


@contextmanager
def http_mcp_server(transport: str) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([PYTHON, SERVER, transport, str(port)])
    try:
        for _ in range(300):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise AssertionError("the MCP server exited")
            import time

            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    ("transport", "entry"),
    [
        (
            "streamable-http",
            {
                "url": "http://127.0.0.1:{port}/mcp",
                "transport": "streamable_http",
                "headers": {"X-Test": "1"},
            },
        ),
        ("sse", {"url": "http://127.0.0.1:{port}/sse"}),  # url without transport: sse
    ],
)
async def test_http_transports(transport: str, entry: dict[str, Any]) -> None:
    with http_mcp_server(transport) as port:
        server = {
            "name": "remote",
            **entry,
            "url": entry["url"].format(port=port),
            "tool_filter": {"allowlist": ["get_weather", "ech*"]},
        }
        tools = await started({"mcp_servers": [server]})
        try:
            toolset = tools.toolset(pack_with({}, ["mcp__remote__*"]), "main")
            assert sorted(t.name for t in toolset) == [
                "mcp__remote__echo",
                "mcp__remote__get_weather",
            ]
            outcome = await toolset.execute("mcp__remote__echo", {"text": transport})
            assert (outcome.output, outcome.is_error) == (transport, False)
        finally:
            await tools.aclose()


async def test_a_server_that_never_answers_the_handshake_is_retried() -> None:
    tools = registry(
        checked(
            {
                "mcp_servers": [
                    {
                        "name": "mute",
                        "command": PYTHON,
                        "args": ["-c", "import time; time.sleep(60)"],
                        "timeout_ms": 300,
                    }
                ]
            }
        )
    )
    connection = tools.mcp["mute"]
    connection.reconnect_delays_s = (0.05,)
    started = asyncio.get_running_loop().time()
    await tools.start(connect_timeout_s=10)
    assert asyncio.get_running_loop().time() - started < 5
    assert not connection.connected and connection.last_error is not None
    await tools.aclose()
