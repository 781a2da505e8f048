"""Helpers of the export/import API tests: every backend (memory included), checksum checks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from app.domain.export_doc import document_checksum
from app.main import create_app
from app.settings import Settings
from app.stores.base import StateStore
from tests.api.backends import BACKENDS, state_url_for

ALL_BACKENDS = ["memory", *BACKENDS]


@asynccontextmanager
async def any_state_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "memory":
        yield "memory://"
        return
    async with state_url_for(backend, tmp_path) as url:
        yield url


async def export_doc(client: httpx.AsyncClient, cid: str) -> dict[str, Any]:
    r = await client.get(f"/conversations/{cid}/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = json.loads(r.content)
    return doc


def recomputed_checksum(doc: dict[str, Any]) -> str:
    return document_checksum(
        doc["format"], doc["conversation"], doc["head_message_id"], doc["checkpoints"],
        doc["messages"], doc["summaries"], doc.get("context_items"),
    )  # fmt: skip


@asynccontextmanager
async def app_with_store(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, StateStore]]:
    """`tests.conftest.running_app`, plus the app's store: for state no endpoint writes yet
    (summaries)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state or {})
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            assert state is not None
            yield c, state["manager"].store
