"""Checks of `spec.tools` entries: every field applied or refused, every problem listed.

Mode inference (PromptKit's loader leaves `mode` optional): an explicit `mode` wins;
otherwise `http` -> `live`, `exec` -> `exec`, `mock_result`/`mock_template` -> `mock`, and a
binding with only a `client` block -> `client`. A binding block the mode does not use is a
problem (it would be silently ignored). The `client` block's `consent` applies to any mode:
it, or Parley's `approval: required`, makes the tool need a human's approval.

Refused until Parley implements them: `mock_parts` (media), `exec.runtime: server`,
`exec.sandbox`, `client.timeout_ms`, `consent.decline_strategy` other than `fallback`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import jmespath
import jmespath.exceptions
from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError

from app.tools.base import TOOL_MODES, Approval, ToolMode
from app.tools.bindings import (
    ExecBindingSpec,
    HttpBinding,
    HttpRequestMapping,
    Loc,
    MockBinding,
    Problem,
    ToolBinding,
)
from app.tools.config_models import ExecBinding, HTTPConfig, RequestMapping, ToolSpec
from app.tools.config_parse import (
    ENV_NAME,
    HEADER_NAME,
    parse_model,
    strings_without_crlf,
    timeout_s,
)
from app.tools.templates import FieldTemplate, TemplateError

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
DEFAULT_METHOD = "POST"  # PromptKit's default


def check_tool(
    name: str, raw: Any, loc: Loc, base_dir: Path, warnings: list[str]
) -> tuple[ToolBinding | None, list[Problem]]:
    problems: list[Problem] = []
    if not TOOL_NAME.match(name):
        problems.append(Problem(loc, "tool names are 1-64 letters, digits, '_' or '-'"))
    elif name.startswith("mcp__"):
        problems.append(Problem(loc, "'mcp__' names are reserved for MCP server tools"))
    spec, errors = parse_model(ToolSpec, raw, loc)
    if spec is None:
        return None, problems + errors
    mode = _mode(spec, loc, problems)
    if spec.name is not None and spec.name != name:
        problems.append(Problem((*loc, "name"), f"must equal its key {name!r}"))
    if spec.description is not None and not spec.description.strip():
        problems.append(Problem((*loc, "description"), "must not be empty"))
    input_schema = _input_schema(spec.input_schema, (*loc, "input_schema"), problems)
    output_schema = _output_schema(spec.output_schema, (*loc, "output_schema"), problems)
    call_timeout = timeout_s(spec.timeout_ms, (*loc, "timeout_ms"), problems)
    if mode == "client" and call_timeout is not None:
        problems.append(
            Problem((*loc, "timeout_ms"), "does not apply to client tools (the client answers)")
        )
    if spec.mock_parts:
        problems.append(Problem((*loc, "mock_parts"), "is not supported until media lands"))
    approval, categories, validate_output = _client_block(name, spec, mode, loc, problems)
    if validate_output and output_schema is None:
        problems.append(
            Problem((*loc, "client", "validate_output"), "needs an output_schema to check")
        )
    binding = ToolBinding(
        name=name,
        mode=mode or "client",
        description=spec.description,
        input_schema=input_schema,
        output_schema=output_schema,
        timeout_s=call_timeout,
        approval=approval,
        categories=categories,
        validate_output=validate_output,
        mock=_mock(spec, loc, problems) if mode == "mock" else None,
        http=_http(spec.http, (*loc, "http"), problems, warnings)
        if mode == "live" and spec.http
        else None,
        exec=_exec(spec.exec, (*loc, "exec"), base_dir, problems)
        if mode == "exec" and spec.exec
        else None,
    )
    return (binding if not problems and mode is not None else None), problems


def _mode(spec: ToolSpec, loc: Loc, problems: list[Problem]) -> ToolMode | None:
    present: dict[ToolMode, str] = {}
    if spec.http is not None:
        present["live"] = "http"
    if spec.exec is not None:
        present["exec"] = "exec"
    if spec.mock_result is not None or spec.mock_template is not None:
        present["mock"] = "mock_result/mock_template"
    if spec.mock_result is not None and spec.mock_template is not None:
        problems.append(Problem(loc, "mock_result and mock_template are mutually exclusive"))
    if spec.mode is not None:
        if spec.mode not in TOOL_MODES:
            problems.append(
                Problem(
                    (*loc, "mode"), f"must be one of {', '.join(TOOL_MODES)} (got {spec.mode!r})"
                )
            )
            return None
        mode: ToolMode = spec.mode
        for other, block in present.items():
            if other != mode:
                problems.append(Problem(loc, f"{block} is set but mode is {mode!r}"))
        if mode in ("live", "exec", "mock") and mode not in present:
            needs = {"live": "http", "exec": "exec", "mock": "mock_result or mock_template"}
            problems.append(Problem(loc, f"mode {mode!r} needs {needs[mode]}"))
            return None
        return mode
    if len(present) > 1:
        problems.append(
            Problem(loc, f"several implementations ({', '.join(present.values())}): keep one")
        )
        return None
    if present:
        return next(iter(present))
    if spec.client is not None:
        return "client"
    problems.append(
        Problem(loc, "no implementation: give http, exec, mock_result, mock_template or client")
    )
    return None


def _input_schema(value: Any, loc: Loc, problems: list[Problem]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") != "object":
        problems.append(Problem(loc, "must be a JSON Schema object with type: object"))
        return None
    _check_schema(value, loc, problems)
    return value


def _output_schema(value: Any, loc: Loc, problems: list[Problem]) -> dict[str, Any] | bool | None:
    if value is None:
        return None
    if not isinstance(value, dict | bool):
        problems.append(Problem(loc, "must be a JSON Schema (an object or a boolean)"))
        return None
    _check_schema(value, loc, problems)
    return value


def _check_schema(value: dict[str, Any] | bool, loc: Loc, problems: list[Problem]) -> None:
    try:
        Draft7Validator.check_schema(value)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.path)
        problems.append(
            Problem(loc, f"invalid JSON Schema{' at ' + where if where else ''}: {exc.message}")
        )


def _client_block(
    name: str, spec: ToolSpec, mode: ToolMode | None, loc: Loc, problems: list[Problem]
) -> tuple[Approval | None, tuple[str, ...], bool]:
    client = spec.client
    approval: Approval | None = None
    consent = client.consent if client else None
    if consent is not None and consent.decline_strategy not in (None, "", "fallback"):
        problems.append(
            Problem(
                (*loc, "client", "consent", "decline_strategy"),
                "only 'fallback' is supported: a rejected call returns 'rejected: <reason>' "
                f"to the model (got {consent.decline_strategy!r})",
            )
        )
    if (consent is not None and consent.required) or spec.approval == "required":
        approval = Approval.of(name, consent.message if consent else None)
    if client is None:
        return approval, (), False
    if client.timeout_ms is not None:
        problems.append(
            Problem(
                (*loc, "client", "timeout_ms"),
                "is not supported: a run waiting for a client result does not expire",
            )
        )
    if client.validate_output and mode != "client":
        problems.append(
            Problem((*loc, "client", "validate_output"), "applies to client tools only")
        )
    return approval, tuple(client.categories or ()), bool(client.validate_output)


def _mock(spec: ToolSpec, loc: Loc, problems: list[Problem]) -> MockBinding | None:
    if spec.mock_template is None:
        return MockBinding(result=spec.mock_result)
    try:
        return MockBinding(template=FieldTemplate.parse(spec.mock_template))
    except TemplateError as exc:
        problems.append(Problem((*loc, "mock_template"), str(exc)))
        return None


def _template(text: str, loc: Loc, problems: list[Problem]) -> FieldTemplate | None:
    try:
        return FieldTemplate.parse(text)
    except TemplateError as exc:
        problems.append(Problem(loc, str(exc)))
        return None


def _jmespath(expr: str | None, loc: Loc, problems: list[Problem]) -> Any:
    if expr is None or expr == "":
        return None
    try:
        return jmespath.compile(expr)
    except jmespath.exceptions.JMESPathError as exc:
        problems.append(Problem(loc, f"invalid JMESPath expression: {exc}"))
        return None


def _http(
    http: HTTPConfig, loc: Loc, problems: list[Problem], warnings: list[str]
) -> HttpBinding | None:
    before = len(problems)
    url = _template(http.url, (*loc, "url"), problems)
    if url is not None:
        _check_url(http.url, (*loc, "url"), problems)
    method = (http.method or DEFAULT_METHOD).upper()
    if method not in HTTP_METHODS:
        problems.append(Problem((*loc, "method"), f"must be one of {', '.join(HTTP_METHODS)}"))
    headers = strings_without_crlf(http.headers, (*loc, "headers"), problems, header_names=True)
    from_env: list[tuple[str, str]] = []
    for i, entry in enumerate(http.headers_from_env or ()):
        header, sep, env = entry.partition("=")
        if not sep or not HEADER_NAME.match(header) or not ENV_NAME.match(env):
            problems.append(
                Problem((*loc, "headers_from_env", i), "must be 'Header-Name=ENV_VARIABLE'")
            )
            continue
        if env not in os.environ:
            warnings.append(f"{'.'.join(map(str, loc))}: {env} is not set; {header} not sent")
        from_env.append((header, env))
    call_timeout = timeout_s(http.timeout_ms, (*loc, "timeout_ms"), problems)
    mapping = _request(http.request, (*loc, "request"), problems) if http.request else None
    response = _jmespath(
        http.response.body_mapping if http.response else None,
        (*loc, "response", "body_mapping"),
        problems,
    )
    accept: tuple[str, ...] | None = None
    if http.multimodal is not None and http.multimodal.enabled:
        accept = tuple(http.multimodal.accept_types or ())
    if len(problems) > before or url is None:
        return None
    return HttpBinding(
        url=url,
        method=method,
        headers=headers,
        headers_from_env=tuple(from_env),
        timeout_s=call_timeout,
        redact=tuple(http.redact or ()),
        request=mapping,
        response_mapping=response,
        multimodal_accept=accept,
    )


def _check_url(template: str, loc: Loc, problems: list[Problem]) -> None:
    """The scheme and host are fixed by the operator: arguments may only fill the path and
    query, so a model can never choose where a request goes."""
    scheme, sep, rest = template.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if not sep or scheme.lower() not in ("http", "https"):
        problems.append(Problem(loc, "must be an http:// or https:// URL"))
    elif "{{" in scheme or "{{" in authority:
        problems.append(Problem(loc, "arguments may fill the path and query, not the host"))
    elif not authority or "@" in authority:
        problems.append(Problem(loc, "needs a host (and no user:password@)"))
    else:
        try:
            httpx.URL(template.replace("{{", "").replace("}}", ""))
        except httpx.InvalidURL as exc:
            problems.append(Problem(loc, f"not a valid URL: {exc}"))


def _request(request: RequestMapping, loc: Loc, problems: list[Problem]) -> HttpRequestMapping:
    header_params: dict[str, FieldTemplate] = {}
    for header, text in (request.header_params or {}).items():
        if not HEADER_NAME.match(header):
            problems.append(Problem((*loc, "header_params", header), "not a valid header name"))
        template = _template(text, (*loc, "header_params", header), problems)
        if template is not None:
            header_params[header] = template
    return HttpRequestMapping(
        query_params=tuple(request.query_params or ()),
        header_params=header_params,
        body_mapping=_jmespath(request.body_mapping, (*loc, "body_mapping"), problems),
        exclude=frozenset(request.exclude or ()),
        static_query=dict(request.static_query or {}),
        static_headers=strings_without_crlf(
            request.static_headers, (*loc, "static_headers"), problems, header_names=True
        ),
        static_body=dict(request.static_body or {}),
    )


def _exec(
    binding: ExecBinding, loc: Loc, base_dir: Path, problems: list[Problem]
) -> ExecBindingSpec | None:
    before = len(problems)
    if binding.runtime == "server":
        problems.append(
            Problem((*loc, "runtime"), "'server' is not supported: use 'exec' (a process per call)")
        )
    if binding.sandbox:
        problems.append(Problem((*loc, "sandbox"), "sandboxes are not supported"))
    for i, env in enumerate(binding.env or ()):
        if not ENV_NAME.match(env):
            problems.append(Problem((*loc, "env", i), f"{env!r} is not an environment name"))
    command = resolve_command(binding.command, base_dir)
    if command is None:
        problems.append(
            Problem((*loc, "command"), f"{binding.command!r} is not an executable (PATH or file)")
        )
    call_timeout = timeout_s(binding.timeout_ms, (*loc, "timeout_ms"), problems)
    if len(problems) > before or command is None:
        return None
    return ExecBindingSpec(
        command=command,
        args=tuple(binding.args or ()),
        env=tuple(binding.env or ()),
        cwd=base_dir,
        timeout_s=call_timeout,
    )


def resolve_command(command: str, base_dir: Path) -> str | None:
    """A command with a `/` is a path (relative to the RuntimeConfig's directory), any
    other is looked up on `PATH` now, so a child without `PATH` still starts."""
    if not command:
        return None
    if "/" in command:
        path = os.path.normpath(base_dir / command)  # not resolve(): keep venv symlinks
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(command)
