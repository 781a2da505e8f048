"""The committed OpenAPI document, checks over it, and validators built from it.

`document_violations` is the rule book every operation must satisfy (the endpoint pattern
of `app/api/__init__.py`); `schema_validator` validates payloads (SSE events, bodies)
against a component of the committed document, so a payload that drifts from the
document fails the test that produced it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator

from app.api import UNCONDITIONAL_WRITES
from tests.conftest import REPO

PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
BEARER = {"bearerAuth": []}
OPERATION_ID = re.compile(r"^[a-z]+(?:[A-Z][a-z0-9]*)+$")  # verb + noun, camelCase
BODY_STATUSES = {"413", "422"}
JSON_BODY_STATUSES = {"400", "415"}  # not JSON; another Content-Type (`app.api.guard`)
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
WRITES = {"put", "post", "delete", "patch"}
CONVERSATION_PATH = "/conversations/{conversation_id}"


@functools.cache
def committed_document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((REPO / "openapi" / "openapi.json").read_text())
    return doc


@functools.cache
def schema_validator(component: str) -> Draft202012Validator:
    doc = committed_document()
    root = {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    return Draft202012Validator(root)


def operations(doc: dict[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def document_violations(
    doc: dict[str, Any], public: Iterable[str], unconditional: Iterable[str] = UNCONDITIONAL_WRITES
) -> list[str]:
    """Every way the document breaks the endpoint pattern, as readable lines.
    `unconditional`: the writes of a conversation's paths that take no `If-Match`."""
    public = set(public)
    unconditional = set(unconditional)
    out: list[str] = []
    schemas = doc.get("components", {}).get("schemas", {})
    tags = {t["name"] for t in doc.get("tags", [])}
    text = json.dumps(doc)
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas or f'/{name}"' in text:
            out.append(f"FastAPI's {name} is in the document")
    problem_like = [
        n
        for n, s in schemas.items()
        if {"code", "status", "detail"} <= set(s.get("properties", {}))
    ]
    if problem_like != ["Problem"]:
        out.append(f"expected exactly one problem schema named Problem, found {problem_like}")
    if "x-parley-" in text:
        out.append("internal x-parley-* keys leaked into the document")
    if doc.get("components", {}).get("securitySchemes") != {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": doc["components"]["securitySchemes"]["bearerAuth"].get("description"),
        }
    }:
        out.append("securitySchemes must be exactly one HTTP bearer scheme named bearerAuth")
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        op_id = op.get("operationId", "")
        if not OPERATION_ID.match(op_id):
            out.append(
                f"{where}: operationId {op_id!r} is not camelCase verb+noun "
                "(forgot **operation(...)?)"
            )
        if len(op.get("tags", [])) != 1 or op["tags"][0] not in tags:
            out.append(f"{where}: needs exactly one documented tag, has {op.get('tags')}")
        params = op.get("parameters", [])
        if any(
            p["in"] == "header" and p["name"].lower() in ("authorization", "accept", "content-type")
            for p in params
        ):
            out.append(f"{where}: Authorization/Accept/Content-Type must not be parameters")
        responses: dict[str, Any] = op["responses"]
        secured = op.get("security") == [BEARER]
        if op_id in public and "security" in op:
            out.append(f"{where}: {op_id} is listed public but declares security")
        if op_id not in public and not secured:
            out.append(f"{where}: takes no API key; use PrincipalDep or list it as public")
        if secured and "401" not in responses:
            out.append(f"{where}: secured but has no 401")
        if "requestBody" in op and not set(responses) >= BODY_STATUSES:
            out.append(f"{where}: has a body but lacks {sorted(BODY_STATUSES - set(responses))}")
        body_types = op.get("requestBody", {}).get("content", {})
        if "application/json" in body_types and not set(responses) >= JSON_BODY_STATUSES:
            lacks = sorted(JSON_BODY_STATUSES - set(responses))
            out.append(f"{where}: has a JSON body but lacks {lacks}")
        if params and "422" not in responses:
            out.append(f"{where}: has parameters but no 422")
        if_match = any(p["in"] == "header" and p["name"] == "If-Match" for p in params)
        writes_conversation = method in WRITES and (
            path == CONVERSATION_PATH or path.startswith(CONVERSATION_PATH + "/")
        )
        if writes_conversation and op_id not in unconditional and not if_match:
            out.append(f"{where}: changes a conversation but takes no If-Match (IfMatchDep)")
        if if_match and "412" not in responses:
            out.append(f"{where}: takes If-Match but has no 412 (PreconditionFailed)")
        for status, response in responses.items():
            if status[0] in "45":
                if response.get("content") != PROBLEM_CONTENT:
                    out.append(f"{where} {status}: an error must be exactly the Problem schema")
                continue
            for media, body in response.get("content", {}).items():
                if media.endswith("json") and not body.get("schema"):
                    out.append(f"{where} {status}: {media} has no schema")
                if media == "application/problem+json":
                    out.append(f"{where} {status}: a success response cannot be a problem")
    return out


def problem_codes_in_descriptions(doc: dict[str, Any]) -> set[str]:
    codes: set[str] = set()
    for _, _, op in operations(doc):
        for status, response in op["responses"].items():
            if status[0] in "45":
                codes |= set(re.findall(r"`([a-z_]+)`", response["description"]))
    return codes
