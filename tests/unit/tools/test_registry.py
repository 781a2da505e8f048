"""`ToolRegistry` / `ToolSet`: resolution, binding metadata, mock tools, validation,
deadlines, limits — the interface the tool loop uses."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from app.tools import ToolExecutor, ToolFailure
from app.tools.base import ToolMode
from app.tools.templates import FieldTemplate, TemplateError
from tests.unit.tools.helpers import checked, fixture_pack, pack_with, registry, settings

HITL = "sdk__examples__hitl__hitl.pack.json"
CLIENT_TOOLS = "sdk__examples__client-tools__client-tools.pack.json"


def test_without_a_binding_pack_tools_stay_client_tools() -> None:
    toolset = registry(checked({})).toolset(fixture_pack(CLIENT_TOOLS), "assistant")
    [tool] = toolset.tools
    assert (tool.name, tool.mode, tool.runs_on_server, tool.approval) == (
        "get_location",
        "client",
        False,
        None,
    )
    assert tool.spec.description == "Get the user's current GPS location"
    assert tool.spec.parameters["properties"]["accuracy"]["enum"] == ["high", "low"]


async def test_client_tools_are_never_run_on_the_server() -> None:
    toolset = registry(checked({"tools": {"get_location": {"client": {}}}})).toolset(
        fixture_pack(CLIENT_TOOLS), "assistant"
    )
    outcome = await toolset.execute("get_location", {})
    assert outcome.is_error and "runs on the client" in outcome.output


def test_hitl_consent_is_exposed_with_its_message() -> None:
    tools = registry(
        checked(
            {
                "tools": {
                    "process_refund": {
                        "mock_result": {"refunded": True},
                        "client": {
                            "consent": {"required": True, "message": "Approve this refund?"}
                        },
                    }
                }
            }
        )
    )
    bound = tools.toolset(fixture_pack(HITL), "refund_agent").get("process_refund")
    assert bound is not None and bound.runs_on_server and bound.mode == "mock"
    assert bound.approval is not None and bound.approval.message == "Approve this refund?"


async def test_mock_result_and_template() -> None:
    tools = registry(
        checked(
            {
                "tools": {
                    "a": {"mock_result": {"fixed": [1, 2]}},
                    "b": {
                        "mock_template": '{"order": "{{.order_id}}", "n": {{.n}}, '
                        '"who": "{{.who.name}}"}'
                    },
                    "c": {"mock_template": "plain {{.missing}}"},
                }
            }
        )
    )
    toolset = tools.toolset(pack_with({n: {"description": n} for n in "abc"}, ["*"]), "main")
    first = await toolset.execute("a", {})
    first.output["fixed"].append(3)  # a caller mutating its output must not change the next
    assert (await toolset.execute("a", {})).output == {"fixed": [1, 2]}
    assert (
        await toolset.execute("b", {"order_id": "X1", "n": 2, "who": {"name": "Al"}})
    ).output == {"order": "X1", "n": 2, "who": "Al"}
    assert (await toolset.execute("c", {})).output == {"result": "plain <no value>"}


def test_template_subset() -> None:
    template = FieldTemplate.parse("/u/{{.id}}/{{ .kind }}?x={{.a.b}}")
    assert template.fields == {"id", "kind", "a"}
    assert template.render({"id": 7, "kind": True, "a": {"b": 1.5}}) == "/u/7/true?x=1.5"
    assert template.render({"id": [1, "a"]}) == '/u/[1,"a"]/<no value>?x=<no value>'
    for bad in ("{{.}}", "{{ if .a }}", "{{.a | html}}", "{{$x}}", "{{/* c */}}", "{{ .a-b }}"):
        with pytest.raises(TemplateError):
            FieldTemplate.parse(bad)


async def test_unknown_tools_invalid_arguments_and_output_schema() -> None:
    tools = registry(
        checked(
            {
                "tools": {
                    "t": {
                        "mock_result": {"n": "not a number"},
                        "input_schema": {
                            "type": "object",
                            "properties": {"q": {"type": "string"}},
                            "required": ["q"],
                        },
                        "output_schema": {
                            "type": "object",
                            "properties": {"n": {"type": "integer"}},
                        },
                    }
                }
            }
        )
    )
    toolset = tools.toolset(pack_with({"t": {"description": "t"}}, ["t"]), "main")
    assert toolset.specs[0].parameters["required"] == ["q"]  # the binding's schema
    unknown = await toolset.execute("nope", {})
    assert unknown.is_error and unknown.output == "unknown tool 'nope' (offered: t)"
    invalid = await toolset.execute("t", {"q": 5})
    assert invalid.is_error and invalid.output == "invalid arguments: q: 5 is not of type 'string'"
    mismatch = await toolset.execute("t", {"q": "x"})
    assert mismatch.is_error and "does not match its output_schema" in mismatch.output


class Gate(ToolExecutor):
    """Counts concurrent calls and holds each until released."""

    mode: ClassVar[ToolMode] = "mock"

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
            return arguments["i"]
        finally:
            self.running -= 1


async def test_concurrency_is_bounded_process_wide_and_order_is_kept() -> None:
    tools = registry(
        checked({"tools": {"t": {"mock_result": 0}}}),
        settings=settings(tool_max_concurrent_calls=2),
    )
    gate = Gate()
    tools.executors["t"] = gate
    toolset = tools.toolset(pack_with({"t": {"description": "t"}}, ["t"]), "main")
    batch = asyncio.create_task(toolset.execute_all([("t", {"i": i}) for i in range(5)]))
    other = asyncio.create_task(toolset.execute("t", {"i": 99}))
    await asyncio.sleep(0.05)
    assert gate.running == 2
    gate.release.set()
    outcomes = await batch
    assert [o.output for o in outcomes] == [0, 1, 2, 3, 4]
    assert (await other).output == 99 and gate.peak == 2


class Hang(ToolExecutor):
    mode: ClassVar[ToolMode] = "mock"
    cancelled = False

    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            Hang.cancelled = True
            raise


class Boom(ToolExecutor):
    mode: ClassVar[ToolMode] = "mock"

    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        raise RuntimeError("secret internals")


class Loud(ToolExecutor):
    mode: ClassVar[ToolMode] = "mock"

    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        raise ToolFailure("nope")


async def test_deadlines_failures_and_size_limits_never_raise() -> None:
    tools = registry(
        checked(
            {
                "tools": {
                    "hang": {"mock_result": 0, "timeout_ms": 200},
                    "boom": {"mock_result": 0},
                    "loud": {"mock_result": 0},
                    "big": {"mock_result": "é" * 800},
                }
            }
        ),
        settings=settings(tool_max_result_bytes=1000),
    )
    tools.executors.update(hang=Hang(), boom=Boom(), loud=Loud())
    pack = pack_with({n: {"description": n} for n in ("hang", "boom", "loud", "big")}, ["*"])
    toolset = tools.toolset(pack, "main")
    hang, boom, loud, big = await toolset.execute_all(
        [("hang", {}), ("boom", {}), ("loud", {}), ("big", {})]
    )
    assert hang.is_error and hang.output == "the tool did not finish within 0.2 s"
    assert 150 <= hang.latency_ms < 1500 and Hang.cancelled
    assert boom.is_error and "secret" not in boom.output
    assert (loud.output, loud.is_error) == ("nope", True)
    assert not big.is_error and big.output.startswith("é" * 500)
    assert "the tool result was 1600 bytes; only the first 1000" in big.output
    short = await toolset.execute("hang", {}, timeout_s=0.05)
    assert short.output == "the tool did not finish within 0.05 s"


def test_client_result_validation() -> None:
    tools = registry(
        checked(
            {
                "tools": {
                    "get_location": {
                        "client": {"validate_output": True},
                        "output_schema": {"type": "object", "required": ["lat"]},
                    }
                }
            }
        )
    )
    bound = tools.toolset(fixture_pack(CLIENT_TOOLS), "assistant").get("get_location")
    assert bound is not None
    assert tools.check_client_result(bound, {"lat": 1}) is None
    bad = tools.check_client_result(bound, {"lon": 1})
    assert bad is not None and bad.is_error and "'lat' is a required property" in bad.output
