"""Tools: the executor ABC, the bound-tool and outcome types, and the interface the tool
loop uses (DESIGN §5 step 4, §12).

A pack declares tool *schemas*; a RuntimeConfig (`PARLEY_RUNTIME_CONFIG`) binds tool names
to implementations. The lifespan builds one `ToolRegistry` (`app.tools.registry`) from the
checked RuntimeConfig and closes it at shutdown. What the tool loop calls:

1. `toolset = registry.toolset(pack, prompt_name)` — the tools one prompt may use, resolved
   from its `tools` entries (exact names and `prefix*` wildcards, e.g. `mcp__github__*`)
   against the pack's tools and the tools the MCP servers currently expose, minus
   `tool_policy.blocklist`. Cheap and synchronous; resolve it once per provider call (MCP
   tools appear and disappear as servers connect). Each `BoundTool` carries:
   - `spec`: what the provider receives (name, description, JSON-schema parameters); send
     `toolset.specs` as `ProviderRequest.tools`;
   - `mode`: `mock` | `live` | `exec` | `mcp` | `client`;
   - `runs_on_server`: False for `client` tools (and for pack tools no RuntimeConfig binds):
     the run pauses with `requires_action` and the client posts the result;
   - `approval`: an `Approval` (consent message) when a human must approve the call before
     it runs (`client.consent.required: true`, or Parley's `approval: required`), else None;
   - `categories`: labels from `client.categories`, to show alongside a pending call.
2. `bound = toolset.get(call.name)`: None when the model called a tool the prompt does not
   offer; `toolset.execute(...)` answers such a call with an `is_error` outcome anyway.
3. `await toolset.execute(name, arguments, timeout_s=...)` runs one server-side call, and
   `await toolset.execute_all([(name, arguments), ...], timeout_s=...)` runs the
   independent calls of one round concurrently, outcomes in call order. Concurrency is
   bounded process-wide (`PARLEY_TOOL_MAX_CONCURRENT_CALLS`; time waiting for a slot counts
   against the deadline). The deadline of a call is the smallest of `timeout_s`, the
   binding's own `timeout_ms` and `PARLEY_TOOL_TIMEOUT_S`.
   **Neither raises for a tool failure**: an unknown tool, arguments that do not match the
   schema, a timeout, an HTTP error, bad JSON from a script, a refused address, a dead MCP
   server — each becomes a `ToolOutcome(output=<message>, is_error=True, latency_ms=...)`
   that the model should see. Only cancellation (`asyncio.CancelledError`) propagates, after
   the call's resources (subprocess group, HTTP request) are released. Outputs larger than
   `PARLEY_TOOL_MAX_RESULT_BYTES` (as JSON) are cut to that size with a note the model sees.
   Calling `execute` for a client tool returns an `is_error` outcome: never run those here.
4. `registry.check_client_result(bound, output)`: for a client tool whose binding asks for
   `client.validate_output`, an `is_error` outcome when the posted output does not match
   the binding's `output_schema`; None when the output is acceptable.

Executors (one file per mode) implement `ToolExecutor`; they raise `ToolFailure` for a
failure the model should see and the registry turns that, timeouts and unexpected errors
into outcomes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from app.providers.base import ToolSpec

ToolMode = Literal["mock", "live", "exec", "mcp", "client"]
TOOL_MODES: tuple[ToolMode, ...] = ("mock", "live", "exec", "mcp", "client")


class ToolFailure(Exception):
    """A failure the model should see as the tool's result (`is_error: true`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ToolOutcome:
    """The result of one call as the model sees it. `output` is any JSON value (a failure's
    output is a message string)."""

    output: Any
    is_error: bool
    latency_ms: float

    @classmethod
    def failure(cls, message: str, latency_ms: float = 0.0) -> ToolOutcome:
        return cls(output=message, is_error=True, latency_ms=latency_ms)


@dataclass(frozen=True)
class Approval:
    """A human must approve the call before it runs; `message` is shown to them."""

    message: str

    @classmethod
    def of(cls, tool: str, message: str | None = None) -> Approval:
        """With the binding's message, or the default one for `tool`."""
        return cls((message or "").strip() or f"Allow the call to {tool}?")


class ToolExecutor(ABC):
    """One implementation of a tool (a mode). Built by the registry from a checked binding.

    Contract:
    * `call(arguments, timeout_s=...)` runs one call with arguments already validated
      against the tool's input schema, and returns its output (a JSON-serializable value).
    * A failure the model should see raises `ToolFailure(message)`; the message must not
      leak secrets (header values, environment values).
    * It must finish within `timeout_s` seconds; the registry also cancels it at the
      deadline, so cancellation must release everything the call started (a subprocess
      group, an HTTP response).
    * Executors are shared by every conversation: `call` is safe to run concurrently.
    * `runs_on_server` is False for the `client` mode, whose calls are answered by the
      client; the registry never calls `call` on it.
    """

    mode: ClassVar[ToolMode]
    runs_on_server: ClassVar[bool] = True

    @abstractmethod
    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        """Run one call and return its output; raise `ToolFailure` on a tool failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the executor owns (most own nothing)."""


@dataclass(frozen=True)
class BoundTool:
    """A tool a prompt may use, bound to its implementation."""

    name: str
    spec: ToolSpec
    mode: ToolMode
    runs_on_server: bool
    approval: Approval | None = None
    categories: tuple[str, ...] = ()
    timeout_s: float | None = None
    executor: ToolExecutor | None = field(default=None, repr=False, compare=False)
