"""Import holds an imported record to the rules an added one has: a context item's
`media_id` names one of the importing user's uploads, and a message is within
`PARLEY_MAX_MESSAGE_BYTES`. A document breaking either is a 422 `validation_error` at the
record's loc, and nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.api.export_helpers import export_doc, recomputed_checksum
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import make_settings, running_app

PACK = {"pack_id": "general-assistant", "prompt_name": "chat"}


def refused_at(r: httpx.Response) -> list[list[Any]]:
    problem = assert_problem(r, 422, "validation_error")
    return [e["loc"] for e in problem["errors"]]


async def gone(client: httpx.AsyncClient, cid: str) -> bool:
    return (await client.get(f"/conversations/{cid}")).status_code == 404


async def test_an_item_media_id_must_be_one_of_the_importing_users_uploads(
    tmp_path: Path,
) -> None:
    async with running_app(make_settings(tmp_path)) as client:
        cid = (await create_conv(client))["id"]
        r = await client.post(
            "/media", params={"user_id": "alice"}, files={"file": ("n.md", b"# N", "text/markdown")}
        )
        media_id = r.json()["media_id"]
        r = await client.post(f"/conversations/{cid}/context", json={"media_id": media_id})
        assert r.status_code == 201, r.text
        doc = await export_doc(client, cid)

        r = await client.post("/conversations/import", json=doc, params={"conversation_id": "c-a"})
        assert r.status_code == 201, r.text  # alice's own upload
        r = await client.post(
            "/conversations/import", json=doc, params={"conversation_id": "c-b", "user_id": "bob"}
        )
        assert refused_at(r) == [["body", "context_items", 0, "media_id"]]
        assert await gone(client, "c-b")
        doc["context_items"][0]["media_id"] = "med_nowhere"
        doc["checksum"] = recomputed_checksum(doc)
        r = await client.post("/conversations/import", json=doc, params={"conversation_id": "c-c"})
        assert refused_at(r) == [["body", "context_items", 0, "media_id"]]
        assert await gone(client, "c-c")


async def test_an_imported_message_over_the_message_limit_is_refused(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path, max_message_bytes=2000)) as client:
        cid = (await create_conv(client))["id"]
        await send(client, cid, "a" * 1900)  # the limit a sent message has
        doc = await export_doc(client, cid)
        r = await client.post("/conversations/import", json=doc, params={"conversation_id": "ok"})
        assert r.status_code == 201, r.text

        at = next(i for i, m in enumerate(doc["messages"]) if m["role"] == "user")
        big = "b" * 2001
        doc["messages"][at]["content"] = big
        doc["messages"][at]["parts"] = [{"type": "text", "text": big}]
        doc["checksum"] = recomputed_checksum(doc)
        r = await client.post("/conversations/import", json=doc, params={"conversation_id": "big"})
        assert refused_at(r) == [["body", "messages", at]]
        assert await gone(client, "big")

        state = {
            "conversation_id": "pk-big",
            "user_id": "alice",
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "c" * 2001},
            ],
        }
        r = await client.post("/conversations/import", json=state, params=PACK)
        assert refused_at(r) == [["body", "messages", 1]]
        assert await gone(client, "pk-big")
