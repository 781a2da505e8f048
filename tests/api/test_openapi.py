"""The committed OpenAPI document: matches the app (regenerate with `make openapi`) and
follows the endpoint pattern of `app/api/__init__.py` (walked by `document_violations`)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Callable
from typing import Annotated

import pytest
from fastapi import APIRouter, Header

import app
from app.api import PUBLIC_OPERATIONS
from app.api.operation import operation
from app.deps import PrincipalDep
from app.errors import documented_codes
from app.main import create_app
from app.openapi_export import render
from app.settings import Settings
from tests.api.helpers import create_conv
from tests.api.openapi_rules import (
    committed_document,
    document_violations,
    operations,
    problem_codes_in_descriptions,
    schema_validator,
)
from tests.conftest import REPO, running_app


def test_committed_openapi_matches_app() -> None:
    assert committed_document() == json.loads(render()), (
        "openapi/openapi.json is stale: run `make openapi` and commit it"
    )


def test_document_follows_the_endpoint_pattern() -> None:
    assert document_violations(committed_document(), PUBLIC_OPERATIONS) == []


def test_the_walk_catches_a_forgotten_pattern() -> None:
    """An endpoint added without `operation(...)` and one that reads the key by hand are
    reported; hand-written error responses cannot be mixed in."""
    router = APIRouter(tags=["conversations"])

    @router.get(
        "/forgetful/{thing_id}",
        responses={404: {"description": "gone", "content": {"application/json": {}}}},
    )
    async def forgetful(thing_id: str, _: PrincipalDep) -> dict[str, str]:
        return {}

    @router.get("/keyless", **operation("getKeyless"))
    async def keyless(authorization: Annotated[str | None, Header()] = None) -> dict[str, str]:
        return {}

    with pytest.raises(ValueError, match="ParleyError classes"):
        operation("getBad", responses={404: {"description": "x"}})
    with pytest.raises(TypeError, match="responses"):
        router.get("/twice", responses={}, **operation("getTwice"))  # type: ignore[misc]
    test_app = create_app(Settings())
    test_app.include_router(router)
    doc = test_app.openapi()
    found = "\n".join(document_violations(doc, PUBLIC_OPERATIONS))
    assert "GET /forgetful/{thing_id}: operationId 'forgetful_forgetful__thing_id__get'" in found
    assert "GET /keyless: takes no API key" in found
    assert "GET /keyless: Authorization/Accept/Content-Type must not be parameters" in found
    assert "404" not in doc["paths"]["/forgetful/{thing_id}"]["get"]["responses"]
    assert document_violations(committed_document(), PUBLIC_OPERATIONS - {"getHealth"}) == [
        "GET /healthz: takes no API key; use PrincipalDep or list it as public"
    ]


def test_problem_code_enum_is_every_documented_code() -> None:
    for module in pkgutil.walk_packages(app.__path__, "app."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)  # every ParleyError subclass is defined
    doc = committed_document()
    enum = doc["components"]["schemas"]["ProblemCode"]["enum"]
    assert enum == documented_codes()
    assert problem_codes_in_descriptions(doc) <= set(enum)


def test_readme_error_table_lists_exactly_the_codes() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme.split("### Error codes", 1)[1].split("\n\n", 2)[1]
    rows = [row.split("|") for row in table.splitlines()[2:]]
    listed = {code for row in rows for code in re.findall(r"`([a-z_]+)`", row[2])}
    assert listed == set(documented_codes())


def test_every_operation_has_a_short_stable_id() -> None:
    ids = {op["operationId"] for _, _, op in operations(committed_document())}
    assert {
        "listPacks", "getPack", "uploadPack",
        "createConversation", "listConversations", "getConversation", "updateConversation",
        "deleteConversation", "deleteUserConversations",
        "sendMessage", "submitToolResults", "submitToolApprovals", "listMessages", "getMessage",
        "getRun", "getRunEvents", "cancelRun",
        "getHealth", "getReadiness", "getMetrics", "getStats",
    } <= ids  # fmt: skip


def test_enums_are_named_components() -> None:
    schemas = committed_document()["components"]["schemas"]
    for name, values in {
        "FinishReason": {"stop", "length", "tool_calls", "content_filter", "error", "tool_limit"},
        "RunStatus": {"queued", "running", "completed", "failed", "cancelled", "requires_action"},
        "IfBusy": {"enqueue", "reject", "interrupt"},
        "ContextStrategy": {"truncate_oldest", "sliding_window", "summarize", "fail"},
        "OnDisconnect": {"continue", "cancel"},
    }.items():
        assert set(schemas[name]["enum"]) == values, name
    assert schemas["RunOut"]["properties"]["status"] == {"$ref": "#/components/schemas/RunStatus"}


def test_request_defaults_are_optional_and_responses_always_complete() -> None:
    schemas = committed_document()["components"]["schemas"]
    assert "required" not in schemas["SendMessage"]
    assert set(schemas["CreateConversation"]["required"]) == {"pack_id", "prompt_name"}
    assert "required" not in schemas["ContextPolicyInput"]
    message = schemas["Message"]
    assert set(message["required"]) == set(message["properties"])


def test_streaming_operations_describe_their_events() -> None:
    doc = committed_document()
    send = doc["paths"]["/conversations/{conversation_id}/messages"]["post"]["responses"]["200"]
    assert send["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TurnResponse"
    }
    assert send["content"]["text/event-stream"]["schema"] == {
        "$ref": "#/components/schemas/RunStreamEvent"
    }
    events = doc["paths"]["/conversations/{conversation_id}/runs/{run_id}/events"]["get"]
    assert list(events["responses"]["200"]["content"]) == ["text/event-stream"]
    assert "204" in events["responses"]
    union = doc["components"]["schemas"]["RunStreamEvent"]
    assert union["discriminator"]["propertyName"] == "event"
    assert set(union["discriminator"]["mapping"]) == {
        "run.created", "message.created", "message.delta", "tool_call.created",
        "tool_call.completed", "message.completed", "run.requires_action", "run.completed",
        "run.failed", "run.cancelled", "run.snapshot",
    }  # fmt: skip


def test_real_schemas_for_packs_and_stats() -> None:
    doc = committed_document()
    ok = "#/components/schemas/"
    get_pack = doc["paths"]["/packs/{pack_id}"]["get"]["responses"]["200"]
    assert get_pack["content"]["application/json"]["schema"] == {"$ref": ok + "PromptPack"}
    upload = doc["paths"]["/packs"]["post"]["responses"]
    for status in ("200", "201"):
        assert upload[status]["content"]["application/json"]["schema"] == {
            "$ref": ok + "PackSummary"
        }
    stats = doc["paths"]["/stats"]["get"]["responses"]["200"]
    assert stats["content"]["application/json"]["schema"] == {"$ref": ok + "Stats"}


async def test_served_bodies_match_their_schemas(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(cors_origins=["http://127.0.0.1:9"])) as c:
        conv = await create_conv(c)
        r = await c.post(f"/conversations/{conv['id']}/messages", json={"content": "hi"})
        schema_validator("TurnResponse").validate(r.json())
        pack = (await c.get("/packs/general-assistant")).json()
        schema_validator("PromptPack").validate(pack)
        schema_validator("Stats").validate((await c.get("/stats")).json())
        for r in (
            await c.get("/conversations/nope"),
            await c.post(
                "/conversations", content=b"{", headers={"content-type": "application/json"}
            ),
            await c.post("/conversations", json={"pack_id": 1}),
            await c.options(
                "/conversations",
                headers={
                    "Origin": "http://elsewhere.example",
                    "Access-Control-Request-Method": "GET",
                },
            ),
        ):
            assert r.status_code >= 400
            schema_validator("Problem").validate(r.json())
