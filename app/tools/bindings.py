"""What a checked RuntimeConfig holds: plain, immutable values the registry and the provider
factory build from (no I/O, nothing started). `app.tools.config_loader` produces them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jmespath.parser import ParsedResult

from app.providers.configured import ProviderSpec
from app.tools.base import Approval, ToolMode
from app.tools.templates import FieldTemplate

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file, located by its path in the document."""

    loc: Loc
    msg: str

    def __str__(self) -> str:
        where = ".".join(str(part) for part in self.loc) if self.loc else "(root)"
        return f"{where}: {self.msg}"


@dataclass(frozen=True)
class MockBinding:
    result: Any = None
    template: FieldTemplate | None = None


@dataclass(frozen=True)
class HttpRequestMapping:
    query_params: tuple[str, ...] = ()
    header_params: dict[str, FieldTemplate] = field(default_factory=dict)
    body_mapping: ParsedResult | None = None
    exclude: frozenset[str] = frozenset()
    static_query: dict[str, str] = field(default_factory=dict)
    static_headers: dict[str, str] = field(default_factory=dict)
    static_body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpBinding:
    url: FieldTemplate
    method: str
    headers: dict[str, str] = field(default_factory=dict)
    headers_from_env: tuple[tuple[str, str], ...] = ()  # (header, environment variable)
    timeout_s: float | None = None
    redact: tuple[str, ...] = ()
    request: HttpRequestMapping | None = None
    response_mapping: ParsedResult | None = None
    multimodal_accept: tuple[str, ...] | None = None  # None: multimodal off


@dataclass(frozen=True)
class ExecBindingSpec:
    command: str  # absolute path, resolved at load time
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: Path
    timeout_s: float | None = None


@dataclass(frozen=True)
class ToolBinding:
    """One `spec.tools` entry, checked. `description`/`input_schema` None: the pack's."""

    name: str
    mode: ToolMode
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | bool | None = None
    timeout_s: float | None = None
    approval: Approval | None = None
    categories: tuple[str, ...] = ()
    validate_output: bool = False
    mock: MockBinding | None = None
    http: HttpBinding | None = None
    exec: ExecBindingSpec | None = None


McpTransport = Literal["stdio", "sse", "streamable_http"]


@dataclass(frozen=True)
class McpServerSpec:
    name: str
    transport: McpTransport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    allowlist: tuple[str, ...] = ()
    blocklist: tuple[str, ...] = ()

    def exposes(self, tool: str) -> bool:
        """`tool_filter`, as PromptKit reads it: a non-empty allowlist wins over the
        blocklist; entries are names or `prefix*` wildcards."""
        if self.allowlist:
            return any(_matches(p, tool) for p in self.allowlist)
        return not any(_matches(p, tool) for p in self.blocklist)


def _matches(pattern: str, name: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


@dataclass(frozen=True)
class CheckedRuntimeConfig:
    """A RuntimeConfig that passed every check (or, from `check_*`, the problems found)."""

    path: Path | None
    name: str | None = None
    tools: dict[str, ToolBinding] = field(default_factory=dict)
    mcp_servers: tuple[McpServerSpec, ...] = ()
    providers: tuple[ProviderSpec, ...] = ()
    unapplied_sections: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def unapplied_warning(self) -> str | None:
        """The one start-up warning naming every section Parley does not apply."""
        if not self.unapplied_sections:
            return None
        return (
            "RuntimeConfig sections not applied by Parley (configure these with PARLEY_* "
            f"settings or not at all): {', '.join(self.unapplied_sections)}"
        )


EMPTY = CheckedRuntimeConfig(path=None)
