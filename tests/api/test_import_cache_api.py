"""An imported copy keeps the document's message ids in a new lineage: its turns send the
copy's stored text, never the original's cached under the same ids (outside tester T8),
on every backend."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.export_helpers import export_doc, recomputed_checksum
from tests.api.helpers import create_conv, send

CARD = "4111-1111-1111-1111"


@pytest.fixture(params=ALL_BACKENDS)
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_on(request.param, tmp_path, settings_factory()) as c:
        yield c


def _redacted(doc: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(doc).replace(CARD, "[REDACTED]")
    out: dict[str, Any] = json.loads(text)
    out["checksum"] = recomputed_checksum(out)
    return out


def _request_texts(context: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in context["request_body"]["messages"]]


async def test_a_redacted_import_sends_its_own_text_not_the_cached_original(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client, user_id="alice")
    await send(client, conv["id"], f"my card number is {CARD}")
    await send(client, conv["id"], "thanks")  # the original's messages are in the cache
    doc = _redacted(await export_doc(client, conv["id"]))
    r = await client.post(
        "/conversations/import",
        params={"conversation_id": "bob-copy", "user_id": "bob"},
        json=doc,
    )
    assert r.status_code == 201, r.text
    ctx = await client.get("/conversations/bob-copy/context", params={"content": "q"})
    assert ctx.status_code == 200, ctx.text
    texts = _request_texts(ctx.json())
    assert not any(CARD in t for t in texts), texts
    assert "my card number is [REDACTED]" in texts
    reply = await send(client, "bob-copy", "again")
    assert reply["status"] == "completed"
    # the original still sends its own text
    ctx = await client.get(f"/conversations/{conv['id']}/context", params={"content": "q"})
    assert f"my card number is {CARD}" in _request_texts(ctx.json())
