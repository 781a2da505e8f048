"""Several instances on one store agree on a pack's latest version: a version uploaded
through one instance is the latest on another within `LATEST_CHECK_S` (outside tester T3:
the other kept its own latest until something listed the packs there), for
`GET /packs/{id}` and for a conversation created without `pack_version`."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.manager.packs import LATEST_CHECK_S
from app.settings import Settings
from tests.api.backends import BACKENDS, state_url_for
from tests.conftest import REPO, running_app
from tests.contract.coordination.conftest import fresh_redis


def _version(version: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((REPO / "packs" / "general-assistant.pack.json").read_text())
    doc = copy.deepcopy(doc)
    doc["id"], doc["version"] = "shared-latest", version
    return doc


@asynccontextmanager
async def _two_instances(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(state_url_for(backend, tmp_path))
        extra: dict[str, Any] = {}
        if backend == "sqlite":  # two instances on one SQLite file share coordination
            extra["coordination_url"] = await fresh_redis(stack)
        settings = settings_factory(state_url=url, **extra)
        a = await stack.enter_async_context(running_app(settings))
        b = await stack.enter_async_context(running_app(settings))
        yield a, b


async def _created_version(client: httpx.AsyncClient) -> str:
    r = await client.post(
        "/conversations", json={"pack_id": "shared-latest", "prompt_name": "chat", "user_id": "u"}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["pack_version"])


@pytest.mark.redis
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_version_uploaded_on_one_instance_becomes_latest_on_the_other(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with _two_instances(backend, tmp_path, settings_factory) as (a, b):
        assert (await a.post("/packs", json=_version("1.0.0"))).status_code == 201
        assert await _created_version(b) == "1.0.0"  # b knows the pack now
        assert (await a.post("/packs", json=_version("2.0.0"))).status_code == 201
        await asyncio.sleep(LATEST_CHECK_S + 0.2)
        r = await b.get("/packs/shared-latest")
        assert r.status_code == 200 and r.json()["version"] == "2.0.0"
        assert await _created_version(b) == "2.0.0"
        # a named version is looked for at once
        assert (await a.post("/packs", json=_version("3.0.0"))).status_code == 201
        r = await b.get("/packs/shared-latest", params={"version": "3.0.0"})
        assert r.status_code == 200, r.text
