"""PromptPacks over HTTP."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.helpers import assert_problem
from tests.conftest import REPO, running_app
from tests.contract.coordination.conftest import fresh_redis


def _pack() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((REPO / "packs" / "general-assistant.pack.json").read_text())
    return doc


async def test_list_and_get_shipped_packs(client: httpx.AsyncClient) -> None:
    body = (await client.get("/packs")).json()
    ids = [p["id"] for p in body["data"]]
    assert {"general-assistant", "customer-support"} <= set(ids)
    support = next(p for p in body["data"] if p["id"] == "customer-support")
    assert support["prompts"] == ["support"]
    assert {"lookup_order", "create_ticket"} <= set(support["tools"])
    pack = (await client.get("/packs/customer-support")).json()
    assert pack["id"] == "customer-support" and "support" in pack["prompts"]
    assert_problem(await client.get("/packs/nope"), 404, "pack_not_found")
    assert_problem(
        await client.get("/packs/customer-support", params={"version": "9.9.9"}),
        404,
        "pack_not_found",
    )


async def test_upload_versions_side_by_side(client: httpx.AsyncClient) -> None:
    doc = _pack()
    doc["id"] = "uploaded"
    r = await client.post("/packs", json=doc)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "uploaded"
    assert (await client.post("/packs", json=doc)).status_code == 200  # identical: idempotent
    changed = copy.deepcopy(doc)
    changed["description"] = "changed"
    assert_problem(await client.post("/packs", json=changed), 409, "pack_exists")
    v2 = copy.deepcopy(changed)
    v2["version"] = "2.0.0"
    assert (await client.post("/packs", json=v2)).status_code == 201
    assert (await client.get("/packs/uploaded")).json()["version"] == "2.0.0"
    old = (await client.get("/packs/uploaded", params={"version": doc["version"]})).json()
    assert old["version"] == doc["version"]
    r = await client.post(
        "/conversations", json={"pack_id": "uploaded", "prompt_name": "chat", "user_id": "u"}
    )
    assert r.status_code == 201 and r.json()["pack_version"] == "2.0.0"


async def test_upload_invalid_lists_every_problem(client: httpx.AsyncClient) -> None:
    doc = _pack()
    doc["id"] = "Bad Id"
    doc["unexpected"] = True
    del doc["template_engine"]
    body = assert_problem(await client.post("/packs", json=doc), 422, "invalid_pack")
    locs = [tuple(e["loc"]) for e in body["errors"]]
    assert any("id" in loc for loc in locs)
    assert any("unexpected" in loc for loc in locs)
    assert any("template_engine" in loc for loc in locs)
    assert_problem(
        await client.post("/packs", content=b"{nope", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    assert_problem(await client.post("/packs", json=[1, 2]), 422, "validation_error")


async def test_upload_summary_describes_the_uploaded_version(client: httpx.AsyncClient) -> None:
    doc = _pack()
    doc["id"] = "versions"
    doc["version"] = "2.0.0"
    assert (await client.post("/packs", json=doc)).status_code == 201
    old = copy.deepcopy(doc)
    old["version"] = "1.0.0"
    old["name"] = "Old name"
    r = await client.post("/packs", json=old)
    assert r.status_code == 201
    assert r.json()["version"] == "1.0.0" and r.json()["name"] == "Old name"
    assert r.json()["versions"] == ["2.0.0", "1.0.0"]


async def test_get_pack_returns_the_document_as_loaded(client: httpx.AsyncClient) -> None:
    doc = _pack()
    doc["id"] = "roundtrip"
    doc["prompts"]["chat"]["parameters"] = {"temperature": 0.5, "top_k": None}
    assert (await client.post("/packs", json=doc)).status_code == 201
    assert (await client.get("/packs/roundtrip")).json() == doc


@pytest.mark.redis
async def test_uploaded_packs_survive_restart_and_are_shared(
    settings_factory: Callable[..., Settings],
) -> None:
    doc = _pack()
    doc["id"] = "persisted"
    async with AsyncExitStack() as stack:
        # Two instances on one SQLite file need shared coordination (app/stores/sqlite_owner.py)
        settings = settings_factory(coordination_url=await fresh_redis(stack))
        await _shared_and_persisted(settings, doc)


async def _shared_and_persisted(settings: Settings, doc: dict[str, Any]) -> None:
    async with running_app(settings) as a, running_app(settings) as b:
        assert (await a.post("/packs", json=doc)).status_code == 201
        # instance b shares the store: it finds the upload on first use
        r = await b.post(
            "/conversations", json={"pack_id": "persisted", "prompt_name": "chat", "user_id": "u"}
        )
        assert r.status_code == 201, r.text
    async with running_app(settings) as c:
        assert "persisted" in [p["id"] for p in (await c.get("/packs")).json()["data"]]
        changed = copy.deepcopy(doc)
        changed["description"] = "different"
        assert_problem(await c.post("/packs", json=changed), 409, "pack_exists")


async def test_readme_example_pack_uploads_and_chats(client: httpx.AsyncClient) -> None:
    """The README walk-through uploads `examples/hello-world.pack.json`."""
    doc = json.loads((REPO / "examples" / "hello-world.pack.json").read_text())
    r = await client.post("/packs", json=doc)
    assert r.status_code == 201, r.text
    r = await client.post(
        "/conversations",
        json={"pack_id": "hello-world", "prompt_name": "greeter", "user_id": "alice"},
    )
    assert r.status_code == 201, r.text
    assert "greets the visitor" in r.json()["system_prompt"]


async def test_only_service_keys_upload_packs(settings_factory: Callable[..., Settings]) -> None:
    keys = [
        {"key": "svc", "role": "service"},
        {"key": "alice-key", "role": "user", "user_id": "alice"},
    ]
    doc = json.loads((REPO / "examples" / "hello-world.pack.json").read_text())
    async with running_app(settings_factory(auth="keys", api_keys=keys)) as client:
        r = await client.post("/packs", json=doc, headers={"Authorization": "Bearer alice-key"})
        assert_problem(r, 403, "forbidden")
        r = await client.get("/packs/hello-world", headers={"Authorization": "Bearer svc"})
        assert_problem(r, 404, "pack_not_found")
        r = await client.post("/packs", json=doc, headers={"Authorization": "Bearer svc"})
        assert r.status_code == 201
        for path in ("/metrics", "/stats"):
            r = await client.get(path, headers={"Authorization": "Bearer alice-key"})
            assert_problem(r, 403, "forbidden")
            assert_problem(await client.get(path), 401, "unauthorized")
            r = await client.get(path, headers={"Authorization": "Bearer svc"})
            assert r.status_code == 200
