"""MCP servers (`spec.mcp_servers`) through the official `mcp` SDK, and the `mcp` executor.

Each server has one `McpConnection`: a supervisor task that owns the SDK `Client` (its
transport and task group live and die in that task, as anyio requires), lists the server's
tools when it connects, pings it every `ping_interval_s`, and reconnects with backoff when
the connection breaks — rediscovering the tools each time. While a server is down its tools
are not offered and calls to them are tool errors ("unavailable"); the service is not
affected. `tool_filter` decides which discovered tools are exposed, as
`mcp__<server>__<tool>` (names a provider cannot accept are skipped and logged).

Results are shaped as PromptKit shapes them: an `isError` result is a tool error with its
text; no content -> "Operation completed successfully"; one text item -> that text; several
-> the list of texts. Non-text content (images, audio, resources) is a tool error until
media support lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx2
import mcp.types as mcp_types
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from app.tools.base import ToolExecutor, ToolFailure, ToolMode
from app.tools.bindings import McpServerSpec

log = logging.getLogger("parley.tools.mcp")

EXPOSED_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_TIMEOUT_S = 30.0
RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def exposed_name(server: str, tool: str) -> str:
    return f"mcp__{server}__{tool}"


@dataclass(frozen=True)
class McpTool:
    server: str
    name: str  # the server's own name for it
    exposed: str  # mcp__<server>__<name>
    description: str
    input_schema: dict[str, Any]


class McpConnection:
    def __init__(
        self,
        spec: McpServerSpec,
        *,
        ping_interval_s: float = 15.0,
        reconnect_delays_s: Sequence[float] = RECONNECT_DELAYS_S,
    ) -> None:
        self.spec = spec
        self.timeout_s = spec.timeout_s or DEFAULT_TIMEOUT_S
        self.ping_interval_s = ping_interval_s
        self.reconnect_delays_s = tuple(reconnect_delays_s)
        self.tools: dict[str, McpTool] = {}  # by the server's tool name
        self.last_error: str | None = None
        self.connects = 0  # successful connections so far
        self._client: Client | None = None
        self._stop = asyncio.Event()
        self._broken = asyncio.Event()
        self._attempted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"mcp:{self.spec.name}")

    async def wait_first_attempt(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._attempted.wait()

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is None:
            return
        try:
            async with asyncio.timeout(10.0):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def mark_broken(self) -> None:
        self._broken.set()

    async def _supervise(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                async with contextlib.AsyncExitStack() as stack:
                    # a server that never answers the handshake is a failed attempt too
                    async with asyncio.timeout(self.timeout_s):
                        client = await stack.enter_async_context(self._client_for(stack))
                        tools = await self._discover(client)
                    self.tools, self._client = tools, client
                    self.connects += 1
                    failures, self.last_error = 0, None
                    log.info("MCP server %s connected: %d tools", self.spec.name, len(tools))
                    self._attempted.set()
                    await self._watch(client)
            except Exception as exc:
                self.last_error = _describe(exc)
                log.warning("MCP server %s unavailable: %s", self.spec.name, self.last_error)
            finally:
                self._client, self.tools = None, {}
                self._broken.clear()
                self._attempted.set()
            if self._stop.is_set():
                break
            delay = self.reconnect_delays_s[min(failures, len(self.reconnect_delays_s) - 1)]
            failures += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    def _client_for(self, stack: contextlib.AsyncExitStack) -> Client:
        spec = self.spec
        if spec.transport == "stdio":
            assert spec.command is not None
            params = StdioServerParameters(
                command=spec.command, args=list(spec.args), env=dict(spec.env), cwd=spec.cwd
            )
            return Client(params, read_timeout_seconds=self.timeout_s, mode="legacy")
        assert spec.url is not None
        if spec.transport == "sse":
            return Client(
                sse_client(spec.url, headers=dict(spec.headers), timeout=self.timeout_s),
                read_timeout_seconds=self.timeout_s,
                mode="legacy",
            )
        http = httpx2.AsyncClient(
            headers=dict(spec.headers), timeout=httpx2.Timeout(self.timeout_s, read=300.0)
        )
        stack.push_async_callback(http.aclose)
        return Client(
            streamable_http_client(spec.url, http_client=http),
            read_timeout_seconds=self.timeout_s,
            mode="legacy",
        )

    async def _discover(self, client: Client) -> dict[str, McpTool]:
        found: dict[str, McpTool] = {}
        cursor: str | None = None
        for _ in range(100):  # pages
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            for tool in page.tools:
                self._add(found, tool)
            cursor = page.next_cursor
            if not cursor:
                break
        return found

    def _add(self, found: dict[str, McpTool], tool: mcp_types.Tool) -> None:
        if not self.spec.exposes(tool.name):
            return
        name = exposed_name(self.spec.name, tool.name)
        if not EXPOSED_NAME.match(name):
            log.warning(
                "MCP tool %r of %s skipped: %r is not a valid tool name for "
                "providers (1-64 of A-Z a-z 0-9 _ -)",
                tool.name,
                self.spec.name,
                name,
            )
            return
        schema = dict(tool.input_schema or {})
        schema.setdefault("type", "object")
        found[tool.name] = McpTool(
            server=self.spec.name,
            name=tool.name,
            exposed=name,
            description=tool.description or tool.title or tool.name,
            input_schema=schema,
        )

    async def _watch(self, client: Client) -> None:
        while not self._stop.is_set() and not self._broken.is_set():
            stop = asyncio.ensure_future(self._stop.wait())
            broken = asyncio.ensure_future(self._broken.wait())
            try:
                await asyncio.wait(
                    {stop, broken},
                    timeout=self.ping_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                stop.cancel()
                broken.cancel()
            if self._stop.is_set() or self._broken.is_set():
                return
            async with asyncio.timeout(self.timeout_s):
                await client.send_ping()

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> Any:
        client = self._client
        if client is None or tool not in self.tools:
            why = f": {self.last_error}" if self.last_error else ""
            raise ToolFailure(f"MCP server {self.spec.name!r} is unavailable{why}")
        try:
            result = await client.call_tool(
                tool, arguments, read_timeout_seconds=min(timeout_s, self.timeout_s)
            )
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                self.mark_broken()
                raise ToolFailure(f"MCP server {self.spec.name!r} closed the connection") from None
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                raise ToolFailure(f"MCP server {self.spec.name!r} did not answer in time") from None
            raise ToolFailure(f"MCP error {exc.code}: {exc.message}") from None
        except (TimeoutError, asyncio.CancelledError):
            raise
        except Exception as exc:
            self.mark_broken()
            raise ToolFailure(
                f"MCP server {self.spec.name!r} is unavailable: {_describe(exc)}"
            ) from None
        return shape_result(result)


def shape_result(result: mcp_types.CallToolResult) -> Any:
    texts = [c.text for c in result.content if isinstance(c, mcp_types.TextContent) and c.text]
    others = [c.type for c in result.content if not isinstance(c, mcp_types.TextContent)]
    if result.is_error:
        raise ToolFailure("; ".join(texts) or "MCP tool returned error")
    if others and not texts:
        raise ToolFailure(
            f"the MCP tool returned {', '.join(sorted(set(others)))} content, which Parley "
            "cannot pass to the model until media support lands"
        )
    if not texts:
        if result.structured_content is not None:
            return result.structured_content
        return "Operation completed successfully"
    return texts[0] if len(texts) == 1 else texts


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


class McpExecutor(ToolExecutor):
    """Calls one tool of one MCP server (for `mcp__<server>__<tool>`, or a `spec.tools`
    binding with `mode: mcp`, which calls the pack tool's name on the server exposing it)."""

    mode: ClassVar[ToolMode] = "mcp"

    def __init__(self, connection: McpConnection, tool: str) -> None:
        self.connection = connection
        self.tool = tool

    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        return await self.connection.call(self.tool, arguments, timeout_s)
