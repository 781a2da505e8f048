"""`exec` tools: a real subprocess per call (tests/unit/tools/peers/tool_script.py)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from app.tools import ToolRegistry
from tests.unit.tools.helpers import PYTHON, checked, pack_with, registry, settings

SCRIPT = "tool_script.py"


def exec_tool(mode: str, *extra: str, **binding: Any) -> dict[str, Any]:
    return {"exec": {"command": PYTHON, "args": [SCRIPT, mode, *extra], **binding}}


def tools_for(spec: dict[str, Any], **values: Any) -> ToolRegistry:
    return registry(
        checked({"tools": spec}),
        settings=settings(**values),
        environ={"TOOL_TOKEN": "t-1", "OTHER_SECRET": "nope", "PATH": "/usr/bin"},
    )


def one_pack(*names: str) -> Any:
    return pack_with({n: {"description": n} for n in names}, list(names))


async def test_arguments_on_stdin_result_from_stdout() -> None:
    tools = tools_for({"w": exec_tool("weather")})
    outcome = await tools.toolset(one_pack("w"), "main").execute("w", {"city": "Oslo"})
    assert not outcome.is_error
    assert outcome.output == {"city": "Oslo", "temp_c": 21, "args": {"city": "Oslo"}}


async def test_only_listed_environment_variables_pass_through() -> None:
    tools = tools_for({"e": exec_tool("env", env=["TOOL_TOKEN", "UNSET_ONE"])})
    outcome = await tools.toolset(one_pack("e"), "main").execute("e", {})
    env = {k: v for k, v in outcome.output.items() if k not in ("LC_CTYPE", "PYTHONHASHSEED")}
    assert env == {"TOOL_TOKEN": "t-1"}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("error", "the city is unknown"),
        ("exit3", "exited with status 3 (stderr: something broke)"),
        ("badjson", "did not write JSON"),
        ("nan", "did not write JSON"),  # NaN reached a stored message before
    ],
)
async def test_failures_become_tool_errors(mode: str, expected: str) -> None:
    tools = tools_for({"t": exec_tool(mode)})
    outcome = await tools.toolset(one_pack("t"), "main").execute("t", {})
    assert outcome.is_error and expected in outcome.output


async def test_a_document_without_result_is_the_output_itself() -> None:
    tools = tools_for({"t": exec_tool("raw")})
    outcome = await tools.toolset(one_pack("t"), "main").execute("t", {})
    assert outcome.output == {"sentiment": "positive"}


async def test_output_beyond_the_limit_stops_the_tool() -> None:
    tools = tools_for({"t": exec_tool("big", "50000")}, tool_max_result_bytes=1000)
    outcome = await tools.toolset(one_pack("t"), "main").execute("t", {})
    assert outcome.is_error and "more than 1000 bytes" in outcome.output


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def _read_pids(pidfile: Path) -> tuple[int, int] | None:
    text = pidfile.read_text().strip() if pidfile.exists() else ""
    if not text:
        return None
    parent, child = text.split()
    return int(parent), int(child)


async def _wait_pids(pidfile: Path) -> tuple[int, int]:
    for _ in range(200):
        pids = _read_pids(pidfile)
        if pids is not None:
            return pids
        await asyncio.sleep(0.02)
    raise AssertionError("the tool never started")


async def test_hung_tool_is_killed_at_its_timeout_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    tools = tools_for({"t": exec_tool("hang", str(pidfile), timeout_ms=1500)})
    started = time.monotonic()
    outcome = await tools.toolset(one_pack("t"), "main").execute("t", {})
    elapsed = time.monotonic() - started
    assert outcome.is_error and "did not answer within 1.5 s and was killed" in outcome.output
    assert 1.4 <= elapsed < 5
    parent, child = await _wait_pids(pidfile)
    for _ in range(100):
        if not _alive(parent) and not _alive(child):
            break
        await asyncio.sleep(0.02)
    assert not _alive(parent) and not _alive(child)


async def test_cancelling_a_call_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    tools = tools_for({"t": exec_tool("hang", str(pidfile))})
    task = asyncio.create_task(tools.toolset(one_pack("t"), "main").execute("t", {}))
    parent, child = await _wait_pids(pidfile)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if not _alive(parent) and not _alive(child):
            break
        await asyncio.sleep(0.02)
    assert not _alive(parent) and not _alive(child)


async def test_execute_all_returns_outcomes_in_call_order() -> None:
    tools = tools_for({"t": exec_tool("weather")}, tool_max_concurrent_calls=2)
    toolset = tools.toolset(one_pack("t"), "main")
    outcomes = await toolset.execute_all([("t", {"city": str(i)}) for i in range(6)])
    assert [o.output["city"] for o in outcomes] == [str(i) for i in range(6)]
