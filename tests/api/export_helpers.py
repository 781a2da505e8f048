"""Helpers of the export/import API tests: every backend (memory included), checksum checks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from app.domain.export_doc import document_checksum
from app.settings import Settings
from app.stores.base import StateStore
from tests.api.backends import ALL_BACKENDS
from tests.conftest import app_and_manager

__all__ = ["ALL_BACKENDS", "app_with_store", "export_doc", "recomputed_checksum"]


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
    """`tests.conftest.app_and_manager`, with the manager's store: for state no endpoint
    writes yet (summaries)."""
    async with app_and_manager(settings) as (client, manager):
        yield client, manager.store
