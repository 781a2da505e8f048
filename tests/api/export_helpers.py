"""Helpers of the export/import API tests: every backend (memory included), checksum checks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from app.domain.export_doc import document_checksum
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
        doc["messages"],
    )  # fmt: skip
