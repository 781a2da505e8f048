"""How a `live` tool's arguments become an HTTP request, and its response a tool output
(PromptKit's HTTP mapping; pure functions, tested directly).

Request:
* `url` is rendered with the `{{.field}}` subset; each substituted value is
  percent-encoded (PromptKit inserts it raw; encoding keeps a value inside its path
  segment). Arguments the URL uses are not sent again elsewhere.
* Without `request`: for GET/HEAD/DELETE the other arguments become query parameters, for
  POST/PUT/PATCH the JSON body (an empty object sends no body).
* With `request`: `query_params` names the arguments sent as query parameters, plus
  `static_query`; `header_params` renders header values from arguments; every other
  argument not in `exclude` goes to the body (POST/PUT/PATCH only; other methods send no
  body), with `static_body` merged in and then `body_mapping` (JMESPath) reshaping it;
  `static_headers` are added.
* Headers, later wins: `header_params`, `static_headers`, `headers`, `headers_from_env`.
Response (`shape_response`): a non-2xx status is a tool error; `redact` replaces the named
top-level fields with `"[REDACTED]"`; a body that is not JSON becomes `{"result": text}`;
`response.body_mapping` (JMESPath) selects what the model sees.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from app.json_text import loads_strict
from app.tools.base import ToolFailure
from app.tools.bindings import HttpBinding
from app.tools.templates import MissingArgument, format_value

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
REDACTED = "[REDACTED]"


@dataclass
class MappedRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


def query_value(value: Any) -> str:
    return "" if value is None else format_value(value)


def build_request(
    binding: HttpBinding, args: Mapping[str, Any], environ: Mapping[str, str]
) -> MappedRequest:
    """The request for one call; `ToolFailure` when an argument the URL or a header needs
    is missing or a header value would contain a line break."""
    try:
        url = binding.url.render(args, strict=True, quote=lambda s: quote(s, safe=""))
    except MissingArgument as exc:
        raise ToolFailure(f"missing argument {exc.field!r} (needed by the URL)") from None
    used = set(binding.url.fields)
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    body_args: dict[str, Any] | None
    mapping = binding.request
    if mapping is None:
        rest = {k: v for k, v in args.items() if k not in used}
        if binding.method in BODY_METHODS:
            body_args = rest
        else:
            query = {k: query_value(v) for k, v in rest.items()}
            body_args = None
    else:
        for header, template in mapping.header_params.items():
            try:
                headers[header] = template.render(args, strict=True)
            except MissingArgument as exc:
                raise ToolFailure(f"missing argument {exc.field!r} (header {header})") from None
            used |= template.fields
        for key in mapping.query_params:
            if key in args:
                query[key] = query_value(args[key])
        query.update(mapping.static_query)
        used |= set(mapping.query_params) | mapping.exclude
        body_args = None
        if binding.method in BODY_METHODS:
            body_args = {k: v for k, v in args.items() if k not in used}
            body_args.update(mapping.static_body)
        headers.update(mapping.static_headers)
    headers.update(binding.headers)
    for header, env in binding.headers_from_env:
        value = environ.get(env)
        if value:
            headers[header] = value
    for header, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ToolFailure(f"header {header} would contain a line break")
    body: bytes | None = None
    if body_args:
        shaped: Any = body_args
        if mapping is not None and mapping.body_mapping is not None:
            shaped = mapping.body_mapping.search(body_args)
        body = json.dumps(shaped).encode()
        headers["Content-Type"] = "application/json"
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ToolFailure(f"the request URL is invalid: {exc}") from None
    if query:
        target = target.copy_merge_params(query)
    return MappedRequest(method=binding.method, url=str(target), headers=headers, body=body)


def shape_response(binding: HttpBinding, status: int, body: bytes) -> Any:
    """The tool output of a complete response body."""
    text = body.decode("utf-8", "replace")
    if not 200 <= status < 300:
        snippet = text[:500] + ("..." if len(text) > 500 else "")
        raise ToolFailure(f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}")
    try:
        doc: Any = loads_strict(text) if text.strip() else None
        is_json = bool(text.strip())
    except ValueError:
        doc, is_json = None, False
    if is_json and binding.redact and isinstance(doc, dict):
        doc = {k: (REDACTED if k in binding.redact else v) for k, v in doc.items()}
    if not is_json:
        doc = {"result": text}
    if binding.response_mapping is not None:
        doc = binding.response_mapping.search(doc)
    return doc
