"""Import applies the caps the API applies to the same fields.

Found by the outside tester: `POST /conversations/import` did not apply the caps the
API applies to the same fields when they are added live (app/domain/limits.py: metadata
at most 64 keys, 16 KiB as JSON, nesting 8; context item `source` at most 500
characters; conversation `variables` likewise bounded). A document breaking them is
stored (201), so an import holds records no request could have created.

Each case: the live request is refused with 422 (checked first, so the test shows the
rule exists), the import of the same value must be a 422 validation_error too, with
nothing stored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api.export_helpers import export_doc, recomputed_checksum
from tests.api.helpers import create_conv, send
from tests.conftest import make_settings, running_app

MANY_KEYS = {f"k{i}": 1 for i in range(100)}
BIG = {"k": "v" * 20_000}
DEEP: dict[str, Any] = {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": 1}}}}}}}}}}


LOC = {
    "item_metadata_keys": "metadata",
    "item_metadata_bytes": "metadata",
    "item_metadata_depth": "metadata",
    "item_source_length": "source",
}


def item(doc: dict[str, Any], **fields: Any) -> None:
    doc["context_items"][0].update(fields)


CASES: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], None]]] = {
    # name: (live POST .../context body that is refused, the same value put in the document)
    "item_metadata_keys": (
        {"content": "x", "metadata": MANY_KEYS},
        lambda d: item(d, metadata=MANY_KEYS),
    ),
    "item_metadata_bytes": ({"content": "x", "metadata": BIG}, lambda d: item(d, metadata=BIG)),
    "item_metadata_depth": ({"content": "x", "metadata": DEEP}, lambda d: item(d, metadata=DEEP)),
    "item_source_length": (
        {"content": "x", "source": "s" * 600},
        lambda d: item(d, source="s" * 600),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_import_refuses_a_context_item_the_api_refuses(tmp_path: Path, case: str) -> None:
    live_body, mutate = CASES[case]
    async with running_app(make_settings(tmp_path)) as client:
        cid = (await create_conv(client))["id"]
        r = await client.post(f"/conversations/{cid}/context", json=live_body)
        assert r.status_code == 422, r.text  # the rule the import should share
        r = await client.post(f"/conversations/{cid}/context", json={"content": "ok"})
        assert r.status_code == 201, r.text
        doc = await export_doc(client, cid)
        mutate(doc)
        doc["checksum"] = recomputed_checksum(doc)
        r = await client.post("/conversations/import", json=doc, params={"conversation_id": "imp"})
        assert r.status_code == 422, f"imported ({r.status_code}) what the API refuses"
        assert r.json()["code"] == "validation_error"
        assert r.json()["errors"][0]["loc"][:4] == ["body", "context_items", 0, LOC[case]]
        assert (await client.get("/conversations/imp")).status_code == 404


async def test_import_refuses_conversation_and_message_metadata_the_api_refuses(
    tmp_path: Path,
) -> None:
    async with running_app(make_settings(tmp_path)) as client:
        r = await client.post(
            "/conversations",
            json={
                "pack_id": "general-assistant",
                "prompt_name": "chat",
                "user_id": "alice",
                "metadata": MANY_KEYS,
            },
        )
        assert r.status_code == 422, r.text
        cid = (await create_conv(client))["id"]
        await send(client, cid, "hello")
        doc = await export_doc(client, cid)
        doc["conversation"]["metadata"] = MANY_KEYS
        doc["messages"][0]["metadata"] = MANY_KEYS
        doc["checksum"] = recomputed_checksum(doc)
        r = await client.post("/conversations/import", json=doc, params={"conversation_id": "imp"})
        assert r.status_code == 422, f"imported ({r.status_code}) what the API refuses"
        locs = {tuple(e["loc"]) for e in r.json()["errors"]}
        assert ("body", "conversation", "metadata") in locs
        assert ("body", "messages", 0, "metadata") in locs
        assert (await client.get("/conversations/imp")).status_code == 404
