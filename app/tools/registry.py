"""`ToolRegistry`: every tool implementation of the process, built by the lifespan from the
checked RuntimeConfig (interface: `app.tools.base`).

* `build_registry(config, settings)` creates executors; nothing is started and no I/O
  happens. `await registry.start()` connects the MCP servers (waiting up to
  `connect_timeout_s` for each first attempt: a server that is down does not stop
  start-up, it keeps reconnecting in the background). `await registry.aclose()` stops
  them and closes the HTTP pool; exec processes never outlive their call.
* `registry.toolset(pack, prompt_name)` resolves a prompt's tools. A pack tool bound in
  `spec.tools` runs as its binding says; a pack tool with no binding stays a client tool
  (what Parley did before RuntimeConfig support). `mcp__<server>__<tool>` entries and
  wildcards select the tools the MCP servers expose right now.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpcore
from jsonschema import Draft7Validator
from jsonschema.protocols import Validator

from app.packs import PromptPack, Tool
from app.packs.tools import matching_tool_names, name_matches
from app.providers.base import ToolSpec
from app.settings import Settings
from app.tools.base import BoundTool, ToolExecutor, ToolFailure, ToolMode, ToolOutcome
from app.tools.bindings import CheckedRuntimeConfig, ToolBinding
from app.tools.client import ClientExecutor
from app.tools.exec import ExecExecutor
from app.tools.http import HttpExecutor, HttpToolClient
from app.tools.mock import MockExecutor
from app.tools.schema_validator import ToolSchemaValidator
from app.tools.ssrf import AddressGuard, GuardedBackend, NetworkPolicy, Resolver, system_resolver
from app.tools.toolset import CallLimits, ResolvedTool, ToolSet, schema_errors

if TYPE_CHECKING:
    # Imported where used: the `mcp` SDK costs ~2 s of CPU to import (its pydantic
    # models), which every process start would pay with no MCP server configured.
    from app.tools.mcp_servers import McpConnection, McpTool

log = logging.getLogger("parley.tools")
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
VALIDATOR_CACHE_SIZE = 512


class McpByNameExecutor(ToolExecutor):
    """`mode: mcp` on a pack tool: call the tool of that name on whichever connected MCP
    server exposes it."""

    mode: ClassVar[ToolMode] = "mcp"

    def __init__(self, registry: ToolRegistry, tool: str) -> None:
        self._registry = registry
        self.tool = tool

    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        for connection in self._registry.mcp.values():
            if self.tool in connection.tools:
                return await connection.call(self.tool, arguments, timeout_s)
        raise ToolFailure(f"no connected MCP server exposes a tool named {self.tool!r}")


class ToolRegistry:
    def __init__(
        self,
        config: CheckedRuntimeConfig,
        settings: Settings,
        *,
        resolver: Resolver = system_resolver,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        environ: Mapping[str, str] | None = None,
        mcp_ping_interval_s: float = 15.0,
    ) -> None:
        self.config = config
        environ = environ if environ is not None else os.environ
        self.limits = CallLimits(
            slots=asyncio.Semaphore(settings.tool_max_concurrent_calls),
            default_timeout_s=settings.tool_timeout_s,
            max_result_bytes=settings.tool_max_result_bytes,
        )
        self.policy = NetworkPolicy(settings.tool_allowed_networks)
        self.http = HttpToolClient(
            GuardedBackend(AddressGuard(self.policy, resolver), network_backend)
        )
        self.mcp: dict[str, McpConnection] = {}
        if config.mcp_servers:
            from app.tools.mcp_servers import McpConnection

            self.mcp = {
                s.name: McpConnection(s, ping_interval_s=mcp_ping_interval_s)
                for s in config.mcp_servers
            }
        self.executors: dict[str, ToolExecutor] = {
            name: self._executor(binding, environ) for name, binding in config.tools.items()
        }
        self._validators: OrderedDict[str, Validator] = OrderedDict()

    def _executor(self, binding: ToolBinding, environ: Mapping[str, str]) -> ToolExecutor:
        limit = self.limits.max_result_bytes
        if binding.mode == "mock" and binding.mock is not None:
            return MockExecutor(binding.mock)
        if binding.mode == "live" and binding.http is not None:
            return HttpExecutor(binding.http, self.http, max_result_bytes=limit, environ=environ)
        if binding.mode == "exec" and binding.exec is not None:
            return ExecExecutor(binding.exec, max_output_bytes=limit, environ=environ)
        if binding.mode == "mcp":
            return McpByNameExecutor(self, binding.name)
        return ClientExecutor()

    async def start(self, *, connect_timeout_s: float = 10.0) -> None:
        for connection in self.mcp.values():
            connection.start()
        await asyncio.gather(*(c.wait_first_attempt(connect_timeout_s) for c in self.mcp.values()))
        for name, connection in self.mcp.items():
            if not connection.connected:
                log.warning(
                    "MCP server %s is not connected yet (%s); its tools fail until it is",
                    name,
                    connection.last_error or "still connecting",
                )

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.mcp.values()))
        await self.http.aclose()
        await asyncio.gather(*(e.aclose() for e in self.executors.values()))

    # --- resolution -------------------------------------------------------------------

    def mcp_tools(self) -> dict[str, tuple[McpConnection, McpTool]]:
        """The MCP tools exposed right now, by `mcp__<server>__<tool>` name."""
        return {
            tool.exposed: (connection, tool)
            for connection in self.mcp.values()
            for tool in list(connection.tools.values())
        }

    def toolset(self, pack: PromptPack, prompt_name: str) -> ToolSet:
        prompt = pack.prompts[prompt_name]
        blocklist = prompt.tool_policy.blocklist if prompt.tool_policy else []
        mcp_tools = self.mcp_tools()
        selected: dict[str, ResolvedTool] = {}
        for entry in prompt.tools:
            names = matching_tool_names(entry, pack.tools) + matching_tool_names(entry, mcp_tools)
            for name in names:
                if name in selected or any(name_matches(b, name) for b in blocklist):
                    continue
                if name in pack.tools:
                    selected[name] = self._bind_pack_tool(pack.tools[name])
                else:
                    connection, tool = mcp_tools[name]
                    selected[name] = self._bind_mcp_tool(connection, tool)
        return ToolSet(list(selected.values()), self.limits)

    def _bind_pack_tool(self, tool: Tool) -> ResolvedTool:
        binding = self.config.tools.get(tool.name)
        parameters = (binding.input_schema if binding else None) or tool.parameters
        spec = ToolSpec(
            name=tool.name,
            description=(binding.description if binding else None) or tool.description,
            parameters=parameters or dict(EMPTY_PARAMETERS),
        )
        if binding is None:
            bound = BoundTool(name=tool.name, spec=spec, mode="client", runs_on_server=False)
            return ResolvedTool(bound, None, None)
        executor = self.executors[tool.name]
        bound = BoundTool(
            name=tool.name,
            spec=spec,
            mode=binding.mode,
            runs_on_server=executor.runs_on_server,
            approval=binding.approval,
            categories=binding.categories,
            timeout_s=binding.timeout_s,
            executor=executor,
        )
        output = self._validator(binding.output_schema)
        return ResolvedTool(bound, self._validator(spec.parameters), output)

    def _bind_mcp_tool(self, connection: McpConnection, tool: McpTool) -> ResolvedTool:
        from app.tools.mcp_servers import McpExecutor

        spec = ToolSpec(
            name=tool.exposed, description=tool.description, parameters=tool.input_schema
        )
        bound = BoundTool(
            name=tool.exposed,
            spec=spec,
            mode="mcp",
            runs_on_server=True,
            executor=McpExecutor(connection, tool.name),
        )
        return ResolvedTool(bound, self._validator(tool.input_schema), None)

    def _validator(self, schema: dict[str, Any] | bool | None) -> Validator | None:
        """A compiled validator, cached by the schema's content (None: nothing to check;
        a schema the validator cannot use is skipped rather than failing every call)."""
        if schema is None:
            return None
        key = json.dumps(schema, sort_keys=True, default=str)
        found = self._validators.get(key)
        if found is not None:
            self._validators.move_to_end(key)
            return found
        try:
            Draft7Validator.check_schema(schema)
        except Exception:
            log.warning("tool schema skipped (not a valid JSON Schema): %.200s", key)
            return None
        validator: Validator = ToolSchemaValidator(schema)
        self._validators[key] = validator
        if len(self._validators) > VALIDATOR_CACHE_SIZE:
            self._validators.popitem(last=False)
        return validator

    def check_client_result(self, bound: BoundTool, output: Any) -> ToolOutcome | None:
        """For a client tool whose binding sets `client.validate_output`: an `is_error`
        outcome when `output` does not match the `output_schema`, else None."""
        binding = self.config.tools.get(bound.name)
        if binding is None or not binding.validate_output:
            return None
        validator = self._validator(binding.output_schema)
        problems = schema_errors(validator, output) if validator else []
        if not problems:
            return None
        return ToolOutcome.failure(
            "the client's result does not match the tool's output_schema: " + "; ".join(problems)
        )

    def summary(self) -> str:
        """One log-line fragment: bound tools by mode, MCP servers and their state."""
        modes: dict[str, int] = {}
        for binding in self.config.tools.values():
            modes[binding.mode] = modes.get(binding.mode, 0) + 1
        tools = ", ".join(f"{n} {m}" for m, n in sorted(modes.items())) or "none bound"
        servers = ", ".join(
            f"{name} ({'up' if c.connected else 'down'}, {len(c.tools)} tools)"
            for name, c in self.mcp.items()
        )
        return f"tools: {tools}" + (f"; mcp: {servers}" if servers else "")


def build_registry(config: CheckedRuntimeConfig, settings: Settings, **kwargs: Any) -> ToolRegistry:
    return ToolRegistry(config, settings, **kwargs)
