"""Checks of `spec.mcp_servers` entries (PromptKit's rules, plus what Parley refuses).

Exactly one of `command` (stdio), `url` (HTTP) or `source` must be set. The transport
defaults as in PromptKit: `command` -> `stdio`, `url` -> `sse` (the legacy HTTP+SSE
transport); `transport: streamable_http` selects Streamable HTTP. `source`/`scope`/
`source_args` (host-provisioned servers) are refused. Relative `working_dir` and `command`
paths are relative to the RuntimeConfig's directory, which is also the default working
directory of a stdio server. MCP server URLs are operator configuration, not model output,
so the tool SSRF policy does not apply to them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from app.tools.bindings import Loc, McpServerSpec, McpTransport, Problem
from app.tools.config_models import MCPServerConfig
from app.tools.config_parse import parse_model, strings_without_crlf, timeout_s
from app.tools.config_tools import resolve_command

SERVER_NAME = re.compile(r"^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$")


def check_mcp_server(
    raw: Any, loc: Loc, base_dir: Path, seen: set[str]
) -> tuple[McpServerSpec | None, list[Problem]]:
    server, problems = parse_model(MCPServerConfig, raw, loc)
    if server is None:
        return None, problems
    if not SERVER_NAME.match(server.name):
        problems.append(
            Problem(
                (*loc, "name"),
                "letters, digits, '-' and single '_' only (tools are named mcp__<server>__<tool>)",
            )
        )
    elif server.name in seen:
        problems.append(Problem((*loc, "name"), f"duplicate MCP server name {server.name!r}"))
    seen.add(server.name)
    given = [k for k in ("command", "url", "source") if getattr(server, k)]
    if len(given) != 1:
        problems.append(
            Problem(loc, "exactly one of 'command' (stdio), 'url' or 'source' is needed")
        )
        return None, problems
    if server.source or server.scope or server.source_args:
        problems.append(Problem((*loc, "source"), "host-provisioned MCP sources are not supported"))
        return None, problems
    transport: McpTransport = server.transport or ("stdio" if server.command else "sse")
    if transport == "stdio" and not server.command:
        problems.append(Problem((*loc, "transport"), "stdio needs command"))
    if transport != "stdio" and not server.url:
        problems.append(Problem((*loc, "transport"), f"{transport} needs url"))
    command: str | None = None
    cwd: Path | None = None
    if server.command:
        command = resolve_command(server.command, base_dir)
        if command is None:
            problems.append(
                Problem(
                    (*loc, "command"), f"{server.command!r} is not an executable (PATH or file)"
                )
            )
        cwd = (base_dir / server.working_dir).resolve() if server.working_dir else base_dir
        if not cwd.is_dir():
            problems.append(Problem((*loc, "working_dir"), f"{cwd} is not a directory"))
        if server.headers:
            problems.append(Problem((*loc, "headers"), "applies to HTTP transports only"))
    else:
        for key in ("env", "working_dir", "args"):
            if getattr(server, key):
                problems.append(Problem((*loc, key), "applies to stdio servers (command) only"))
        url = server.url or ""
        if not url.startswith(("http://", "https://")):
            problems.append(Problem((*loc, "url"), "must be an http:// or https:// URL"))
    headers = strings_without_crlf(server.headers, (*loc, "headers"), problems, header_names=True)
    call_timeout = timeout_s(server.timeout_ms, (*loc, "timeout_ms"), problems)
    if problems:
        return None, problems
    filters = server.tool_filter
    return (
        McpServerSpec(
            name=server.name,
            transport=transport,
            command=command,
            args=tuple(server.args or ()),
            env=dict(server.env or {}),
            cwd=cwd,
            url=server.url,
            headers=headers,
            timeout_s=call_timeout,
            allowlist=tuple(filters.allowlist or ()) if filters else (),
            blocklist=tuple(filters.blocklist or ()) if filters else (),
        ),
        [],
    )
