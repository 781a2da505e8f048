"""Completes FastAPI's document so it is the truth generated clients can rely on.

FastAPI documents what it sees in the signatures; this adds what it cannot see: one
`Problem` schema for every error (its `code` enum derived from `app.errors`), the problem
responses of every operation (declared with `operation()` plus the implied ones, see
`app/api/operation.py`), and the SSE events of streaming responses
(`app/api/stream_events.py`). FastAPI's own `HTTPValidationError` is removed: the service
never sends it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.api.operation import (
    AUTH_ERRORS,
    BODY_ERRORS,
    ERRORS_KEY,
    ETAG_KEY,
    JSON_BODY_ERRORS,
    PARAMETER_ERRORS,
    STREAM_KEY,
)
from app.api.stream_events import SSE_DESCRIPTION
from app.errors import PROBLEM_JSON, ParleyError, documented_codes

COMPONENTS = "#/components/schemas/"
PROBLEM_REF = {"$ref": f"{COMPONENTS}Problem"}
STREAM_REF = {"$ref": f"{COMPONENTS}RunStreamEvent"}
ETAG_HEADER = {
    "ETag": {
        "description": 'The conversation\'s entity tag, `"<version>.<incarnation>"` (say '
        '`"3.9f86d081884c"`): send it back in `If-Match` to change the conversation only '
        "if nobody changed it since.",
        "schema": {"type": "string"},
    }
}
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

TAGS = [
    {"name": "packs", "description": "PromptPacks: list, read, upload."},
    {"name": "conversations", "description": "Open, list, read, update and delete."},
    {
        "name": "messages",
        "description": "Send messages (runs a turn), edit them, regenerate replies, read "
        "the history.",
    },
    {"name": "context", "description": "The context window: what the next turn sends."},
    {
        "name": "tree",
        "description": "The message tree: checkpoints, rollback, branches, the head, forks.",
    },
    {
        "name": "export",
        "description": "Export a conversation or a user's conversations; import a document.",
    },
    {"name": "runs", "description": "A turn's status, its event stream, cancellation."},
    {"name": "media", "description": "Upload media, download what you own."},
    {"name": "operations", "description": "Health, readiness, metrics, statistics."},
]


def problem_schemas(codes: Iterable[str]) -> dict[str, Any]:
    return {
        "Problem": {
            "title": "Problem",
            "description": "An error, as `application/problem+json` (RFC 9457). `code` is "
            "the stable, machine-readable part; `detail` is for humans.",
            "type": "object",
            "properties": {
                "type": {"type": "string", "description": "A URI naming the problem type."},
                "title": {"type": "string"},
                "status": {"type": "integer", "description": "The HTTP status."},
                "detail": {"type": "string"},
                "code": {"$ref": f"{COMPONENTS}ProblemCode"},
                "errors": {
                    "type": "array",
                    "items": {"$ref": f"{COMPONENTS}ProblemItem"},
                    "description": "Every problem found, for validation errors.",
                },
                "run_id": {
                    "type": "string",
                    "description": "`conversation_busy`: the run holding the conversation.",
                },
                "version": {
                    "type": "integer",
                    "description": "`precondition_failed`: the conversation's current version.",
                },
                "retry_after_s": {
                    "type": "number",
                    "description": "`rate_limited`: when the provider allows a retry.",
                },
                "provider_status": {
                    "type": "integer",
                    "description": "`provider_error`: the provider's HTTP status.",
                },
            },
            "required": ["type", "title", "status", "detail", "code"],
        },
        "ProblemCode": {
            "title": "ProblemCode",
            "description": "Every code a problem can carry (README: Error codes).",
            "type": "string",
            "enum": list(codes),
        },
        "ProblemItem": {
            "title": "ProblemItem",
            "type": "object",
            "properties": {
                "loc": {
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "description": "Where: `body`, `query`, `path` or `header`, then the field.",
                },
                "msg": {"type": "string"},
            },
            "required": ["loc", "msg"],
        },
    }


def _pairs(errors: Iterable[type[ParleyError]]) -> set[tuple[int, str]]:
    return {(e.status, e.code) for e in errors}


def _problem_response(status: int, codes: list[str]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ", ".join(f"`{code}`" for code in codes),
        "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}
        }
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait (`too_many_executions`).",
                "schema": {"type": "string"},
            }
        }
    return response


def _complete_operation(op: dict[str, Any]) -> bool:
    """Set the operation's problem and streaming responses; True if it streams."""
    errors = {(status, code) for status, code in op.pop(ERRORS_KEY, [])}
    stream = op.pop(STREAM_KEY, "never")
    etag = op.pop(ETAG_KEY, False)
    body = op.get("requestBody", {}).get("content", {})
    if op.get("security"):
        errors |= _pairs(AUTH_ERRORS)
    if body:
        errors |= _pairs(BODY_ERRORS)
    if "application/json" in body:
        errors |= _pairs(JSON_BODY_ERRORS)
    if body or op.get("parameters"):
        errors |= _pairs(PARAMETER_ERRORS)
    responses: dict[str, Any] = op["responses"]
    for status in [s for s in responses if s[0] in "45"]:
        del responses[status]
    if etag:
        for status in [s for s in responses if s[0] == "2"]:
            responses[status].setdefault("headers", {}).update(ETAG_HEADER)
    for status in sorted({s for s, _ in errors}):
        codes = sorted(code for s, code in errors if s == status)
        responses[str(status)] = _problem_response(status, codes)
    if stream == "never":
        return False
    ok = responses["200"]
    content = ok.setdefault("content", {})
    if stream == "always":
        content.clear()
        ok["description"] = "The run's events.\n\n" + SSE_DESCRIPTION
    else:
        ok["description"] = (
            "The turn's result as JSON; with `stream: true` or `Accept: text/event-stream`, "
            "the run's events instead.\n\n" + SSE_DESCRIPTION
        )
    content["text/event-stream"] = {"schema": STREAM_REF}
    return True


def _add_schemas(schemas: dict[str, Any], extra: dict[str, Any]) -> None:
    for name, schema in extra.items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"two different schemas are named {name!r} in the document")
        schemas[name] = schema


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: renames.get(v, v) if k == "$ref" else _rename_refs(v, renames)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


def _name_split_models(doc: dict[str, Any]) -> dict[str, Any]:
    """FastAPI names a model used in requests and responses `X-Input` and `X-Output`, both
    titled `X`, and generators that name classes by title (openapi-python-client) then
    fail on the duplicate. The response form becomes `X`, the request form `XInput`."""
    schemas: dict[str, Any] = doc.get("components", {}).get("schemas", {})
    renames: dict[str, str] = {}
    for name in list(schemas):
        base, _, variant = name.rpartition("-")
        if variant in ("Input", "Output") and base:
            new = base if variant == "Output" else f"{base}Input"
            if new in schemas:
                raise RuntimeError(f"cannot rename {name!r}: {new!r} exists")
            renames[COMPONENTS + name] = COMPONENTS + new
            schemas[new] = {**schemas.pop(name), "title": new}
    if not renames:
        return doc
    renamed: dict[str, Any] = _rename_refs(doc, renames)
    return renamed


def _add_request_models(schemas: dict[str, Any], models: Sequence[type[BaseModel]]) -> None:
    """Components for request bodies a route parses itself (declared in `openapi_extra`,
    referenced as `#/components/schemas/<Model>`), named like FastAPI's: a model whose
    response form already has the name gets `<Name>Input`."""
    if not models:
        return
    _, generated = models_json_schema(
        [(m, "validation") for m in models], ref_template=COMPONENTS + "{model}"
    )
    defs: dict[str, Any] = generated.get("$defs", {})
    renames: dict[str, str] = {}
    for name, schema in defs.items():
        if name in schemas and schemas[name] != schema:
            renames[COMPONENTS + name] = COMPONENTS + f"{name}Input"
    for name, schema in defs.items():
        target = renames.get(COMPONENTS + name, COMPONENTS + name).removeprefix(COMPONENTS)
        schemas.setdefault(target, {**_rename_refs(schema, renames), "title": target})


def _request_schemas(doc: dict[str, Any]) -> set[str]:
    """Names of the components a request body can contain (transitively)."""
    schemas: dict[str, Any] = doc["components"]["schemas"]
    found: set[str] = set()
    todo = [
        body
        for _, _, op in _operations(doc)
        for body in op.get("requestBody", {}).get("content", {}).values()
    ]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(COMPONENTS):
                name = ref.removeprefix(COMPONENTS)
                if name not in found and name in schemas:
                    found.add(name)
                    todo.append(schemas[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return found


def _defaults_to_descriptions(doc: dict[str, Any]) -> None:
    """In request schemas, a property's `default` becomes a sentence of its description.
    openapi-typescript (default options) types a property with a `default` as required,
    which would make every client send what the server defaults anyway."""
    schemas: dict[str, Any] = doc["components"]["schemas"]
    for name in _request_schemas(doc):
        for prop in schemas[name].get("properties", {}).values():
            if "default" in prop:
                default = prop.pop("default")
                if default is not None:
                    text = prop.get("description", "").rstrip()
                    prop["description"] = f"{text} Default: `{json.dumps(default)}`.".strip()


def _operations(doc: dict[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def complete_document(
    doc: dict[str, Any], request_models: Sequence[type[BaseModel]] = ()
) -> dict[str, Any]:
    streams = False
    for _, _, op in _operations(doc):
        streams |= _complete_operation(op)
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    _add_schemas(schemas, problem_schemas(documented_codes()))
    if streams and "RunStreamEvent" not in schemas:
        raise RuntimeError("streaming operations need one operation(..., stream='always')")
    if "RunStreamEvent" in schemas:
        _events_in_wire_form(schemas)
    doc = _name_split_models(doc)
    _add_request_models(doc["components"]["schemas"], request_models)
    _defaults_to_descriptions(doc)
    return doc


def _events_in_wire_form(schemas: dict[str, Any]) -> None:
    """Describe each SSE event as it is on the wire, the way OpenAPI tools read an event
    stream: `id` is the text of the `id:` line and `data` the text of the `data:` line, a
    JSON document (`contentMediaType`) whose schema is the payload component
    (`contentSchema`). The Python models in `app/api/stream_events.py` are the decoded form."""
    for ref in schemas["RunStreamEvent"]["discriminator"]["mapping"].values():
        properties = schemas[ref.removeprefix(COMPONENTS)]["properties"]
        payload = properties["data"]
        if payload.get("type") == "string":
            continue  # already done
        properties["data"] = {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": payload,
            "description": "The `data:` line: a JSON document of the payload schema.",
        }
        properties["id"] = {
            "type": "string",
            "pattern": "^[1-9][0-9]*$",
            "description": "The `id:` line: the event's sequence number in the run (1, 2, …).",
        }


def install_openapi(app: FastAPI, request_models: Sequence[type[BaseModel]] = ()) -> None:
    """Serve (and export) the completed document; built once, on first use.
    `request_models`: models of request bodies that routes parse themselves."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    built: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not built:
            built.append(complete_document(copy.deepcopy(generate()), request_models))
        return built[0]

    app.openapi = openapi  # type: ignore[method-assign]
