"""Context items over HTTP (POST /conversations/{id}/context, .../context/items): stored on
every backend, refused cleanly, sent after the system prompt within their budget share
(asserted on the mock provider's requests), copied into forks, gone with the conversation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.context_item import ContextItem
from app.manager.summarizer import SUMMARY_HEADER
from app.manager.token_count import request_tokens
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import assert_problem, create_conv, send
from tests.api.test_summarize_api import chat, policy, recorded_app
from tests.conftest import make_settings
from tests.media_samples import text_pdf

NOTES = "# Launch notes\nThe launch code is 7-4-1."


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def add(client: httpx.AsyncClient, cid: str, **body: Any) -> dict[str, Any]:
    r = await client.post(f"/conversations/{cid}/context", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def items_of(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{cid}/context/items", params={"limit": 200})
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


async def upload(client: httpx.AsyncClient, name: str, data: bytes, mime: str) -> str:
    r = await client.post("/media", params={"user_id": "alice"}, files={"file": (name, data, mime)})
    assert r.status_code == 201, r.text
    return str(r.json()["media_id"])


async def test_a_pdf_upload_becomes_an_item_of_its_text(tmp_path: Path) -> None:
    """A PDF's text layer, pages joined by a blank line, is the item's text and what the
    provider is sent; the item keeps the upload's name as its source."""
    async with recorded_app(make_settings(tmp_path)) as (client, _manager, rec):
        cid = (await create_conv(client))["id"]
        pages = ["Refund policy: 30 days (receipt needed).", "Shipping: 2-4 working days."]
        media_id = await upload(client, "policy.pdf", text_pdf(pages), "application/pdf")
        item = await add(client, cid, media_id=media_id)
        assert item["content"] == "\n\n".join(pages)
        assert item["source"] == "policy.pdf" and item["media_id"] == media_id
        await send(client, cid, "how long for refunds?")
        sent = rec.requests[-1].messages[0]
        assert sent.role == "system"
        assert sent.content == "[Context item: policy.pdf]\n" + "\n\n".join(pages)


async def test_items_are_added_listed_sent_forked_and_deleted_on_every_backend(
    backend: str, tmp_path: Path
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        recorded_app(make_settings(tmp_path, state_url=url)) as (client, manager, rec),
    ):
        conv = await create_conv(client)
        cid = conv["id"]
        pinned = await add(client, cid, content=NOTES, source="notes.md", pinned=True)
        assert pinned["conversation_id"] == cid and pinned["pinned"] is True
        assert pinned["content"] == NOTES and pinned["tokens"] > 0
        media_id = await upload(client, "faq.md", b"Q: colour?\nA: teal.", "text/markdown")
        from_media = await add(client, cid, media_id=media_id, metadata={"k": 1})
        assert from_media["content"] == "Q: colour?\nA: teal." and from_media["source"] == "faq.md"
        assert from_media["media_id"] == media_id and from_media["pinned"] is False

        first = await client.get(f"/conversations/{cid}/context/items", params={"limit": 1})
        assert [i["id"] for i in first.json()["data"]] == [pinned["id"]]
        rest = await client.get(
            f"/conversations/{cid}/context/items",
            params={"limit": 1, "cursor": first.json()["next_cursor"]},
        )
        assert [i["id"] for i in rest.json()["data"]] == [from_media["id"]]
        assert rest.json()["next_cursor"] is None
        other = (await create_conv(client))["id"]  # a cursor is bound to its conversation
        r = await client.get(
            f"/conversations/{other}/context/items",
            params={"cursor": first.json()["next_cursor"]},
        )
        assert_problem(r, 400, "invalid_cursor")
        got = await client.get(f"/conversations/{cid}/context/items/{pinned['id']}")
        assert got.status_code == 200 and got.json() == pinned

        await send(client, cid, "hello")
        request = rec.requests[-1]
        assert request.system  # the system prompt, then the items, oldest first
        assert [m.role for m in request.messages[:2]] == ["system", "system"]
        assert request.messages[0].content == f"[Context item: notes.md]\n{NOTES}"
        assert request.messages[1].content.endswith("A: teal.")
        assert request.messages[2].content == "hello"

        r = await client.post(f"/conversations/{cid}/fork", json={})
        assert r.status_code == 201, r.text
        fork_id = r.json()["id"]
        fork_items = await items_of(client, fork_id)
        assert [(i["content"], i["pinned"]) for i in fork_items] == [
            (NOTES, True),
            (from_media["content"], False),
        ]
        assert {i["id"] for i in fork_items}.isdisjoint({pinned["id"], from_media["id"]})

        r = await client.delete(f"/conversations/{cid}/context/items/{pinned['id']}")
        assert r.status_code == 204
        r = await client.delete(f"/conversations/{cid}/context/items/{pinned['id']}")
        assert_problem(r, 404, "context_item_not_found")
        r = await client.get(f"/conversations/{cid}/context/items/{pinned['id']}")
        assert_problem(r, 404, "context_item_not_found")
        assert len(await items_of(client, fork_id)) == 2, "the fork's copies stay"
        await send(client, cid, "again")
        assert all(NOTES not in (m.content or "") for m in rec.requests[-1].messages)

        assert (await client.delete(f"/conversations/{cid}")).status_code == 204
        assert await manager.store.list_context_items(cid) == []
        assert len(await manager.store.list_context_items(fork_id)) == 2
        assert (await client.delete(f"/conversations/{fork_id}")).status_code == 204
        assert await manager.store.list_context_items(fork_id) == []
        footprint = await manager.store.footprint(conv["lineage_id"], [cid, fork_id])
        assert footprint["context_items"] == 0


async def test_bad_items_are_refused_with_their_codes_and_nothing_is_stored(
    backend: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, context_item_max_kb=1, context_items_max=2)
    async with (
        state_url_for(backend, tmp_path) as url,
        recorded_app(settings.model_copy(update={"state_url": url})) as (client, _, _rec),
    ):
        cid = (await create_conv(client))["id"]
        path = f"/conversations/{cid}/context"
        for body in ({}, {"content": "x", "media_id": "m"}, {"content": ""}, {"pinned": True}):
            assert_problem(await client.post(path, json=body), 422, "validation_error")
        assert_problem(await client.post(path, json={"content": "   "}), 422, "validation_error")
        assert_problem(
            await client.post(path, json={"content": "x" * 1025}), 413, "context_item_too_large"
        )
        broken = await upload(
            client, "doc.pdf", b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n", "application/pdf"
        )
        problem = assert_problem(
            await client.post(path, json={"media_id": broken}), 422, "unsupported_media"
        )
        assert "PDF" in problem["detail"], problem
        no_text = await upload(client, "scan.pdf", text_pdf([""]), "application/pdf")
        problem = assert_problem(
            await client.post(path, json={"media_id": no_text}), 422, "unsupported_media"
        )
        assert "no text layer" in problem["detail"], problem
        long_pdf = await upload(client, "long.pdf", text_pdf(["y" * 600] * 3), "application/pdf")
        assert_problem(
            await client.post(path, json={"media_id": long_pdf}), 413, "context_item_too_large"
        )
        png = await upload(
            client,
            "x.png",
            bytes.fromhex("89504e470d0a1a0a0000000d49484452") + b"\0" * 64,
            "image/png",
        )
        assert_problem(await client.post(path, json={"media_id": png}), 422, "unsupported_media")
        big = await upload(client, "big.txt", b"y" * 2048, "text/plain")
        assert_problem(
            await client.post(path, json={"media_id": big}), 413, "context_item_too_large"
        )
        assert_problem(await client.post(path, json={"media_id": "nope"}), 404, "media_not_found")
        assert_problem(
            await client.post("/conversations/nope/context", json={"content": "x"}),
            404,
            "conversation_not_found",
        )
        assert await items_of(client, cid) == []
        await add(client, cid, content="one")
        await add(client, cid, content="two")
        assert_problem(await client.post(path, json={"content": "three"}), 422, "validation_error")
        assert [i["content"] for i in await items_of(client, cid)] == ["one", "two"]
        r = await client.get(f"/conversations/{cid}/context/items", params={"cursor": "bad!"})
        assert r.status_code == 400, r.text


async def test_unpinned_items_fill_their_share_newest_first_and_the_window_never_exceeds(
    backend: str, tmp_path: Path
) -> None:
    policy = {"max_input_tokens": 400, "reserve_output_tokens": 50, "max_context_tokens": 100}
    async with (
        state_url_for(backend, tmp_path) as url,
        recorded_app(make_settings(tmp_path, state_url=url)) as (client, _, rec),
    ):
        cid = (await create_conv(client, context_policy=policy))["id"]
        old = await add(client, cid, content="old " + "a" * 120)  # ~40 tokens
        mid = await add(client, cid, content="mid " + "b" * 120)
        new = await add(client, cid, content="new " + "c" * 120)
        for i in range(12):
            await send(client, cid, f"turn {i}: " + "filler words " * 8)
        for request in rec.requests:
            assert request_tokens(request, "openai") <= 400 - 50
        sent = [m.content for m in rec.requests[-1].messages if m.role == "system"]
        assert sent == [f"[Context item]\n{mid['content']}", f"[Context item]\n{new['content']}"]

        r = await client.get(f"/conversations/{cid}/context")
        p = r.json()
        assert p["context_item_ids"] == [mid["id"], new["id"]]
        assert p["dropped_context_item_ids"] == [old["id"]]
        b = p["budget"]
        assert b["context_items"] == mid["tokens"] + new["tokens"] <= 100
        assert b["context_items_share"] == 100
        assert b["total"] == b["system"] + b["context_items"] + b["history"] + b["tools"]
        assert b["total"] <= b["input_budget"]
        assert p["dropped"] > 0, "the history got what the items left"

        # the default share is a quarter of the input budget
        r = await client.patch(
            f"/conversations/{cid}", json={"context_policy": {**policy, "max_context_tokens": None}}
        )
        assert r.status_code == 200, r.text
        b = (await client.get(f"/conversations/{cid}/context")).json()["budget"]
        assert b["context_items_share"] == 350 // 4


async def test_pinned_items_always_go_and_overflow_only_where_the_policy_says(
    tmp_path: Path,
) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, _, rec):
        base = {"max_input_tokens": 600, "reserve_output_tokens": 50, "max_context_tokens": 50}
        lenient = (await create_conv(client, context_policy=base))["id"]
        strict = (await create_conv(client, context_policy={**base, "strategy": "fail"}))["id"]
        big = "p" * 400  # ~100 tokens, twice the share
        for cid in (lenient, strict):
            await add(client, cid, content=big, pinned=True)
        await send(client, lenient, "hi")
        assert rec.requests[-1].messages[0].content == f"[Context item]\n{big}"
        calls = len(rec.requests)
        r = await client.post(f"/conversations/{strict}/messages", json={"content": "hi"})
        problem = assert_problem(r, 422, "context_overflow")
        assert "pinned" in problem["detail"] and "50" in problem["detail"]
        assert len(rec.requests) == calls
        msgs = await client.get(f"/conversations/{strict}/messages")
        assert msgs.json()["data"] == [], "a refused turn commits nothing"

        r = await client.patch(
            f"/conversations/{lenient}",
            json={"context_policy": {**base, "max_context_tokens": 550}},
        )
        assert_problem(r, 422, "validation_error")


async def test_with_summarize_items_come_before_the_summary_and_compact_leaves_them_room(
    tmp_path: Path,
) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, _, rec):
        cid = (await create_conv(client, context_policy=policy(900, max_context_tokens=120)))["id"]
        item = await add(client, cid, content="Reference: " + "r" * 300, pinned=True)
        await chat(client, cid, range(30))
        turns = [r for r in rec.requests if r.metadata.get("task") != "summarize"]
        assert rec.summarizations(), "the history outgrew the window"
        for request in turns:
            assert request_tokens(request, "openai") <= 900 - 100
        first, second = turns[-1].messages[:2]
        assert first.content == f"[Context item]\n{item['content']}"
        assert second.role == "system" and second.content.startswith(SUMMARY_HEADER)

        r = await client.post(f"/conversations/{cid}/compact")
        assert r.status_code == 201, r.text
        await send(client, cid, "after compact")
        last = rec.requests[-1]
        assert last.messages[0].content == first.content
        assert request_tokens(last, "openai") <= 900 - 100


async def test_turns_of_a_conversation_that_never_had_items_do_not_read_them(
    tmp_path: Path,
) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, manager, rec):
        store = manager.store
        reads: list[str] = []
        original = store.list_context_items

        async def counted(conversation_id: str) -> list[ContextItem]:
            reads.append(conversation_id)
            return await original(conversation_id)

        store.list_context_items = counted  # type: ignore[method-assign]
        cid = (await create_conv(client))["id"]
        await send(client, cid, "one")
        await send(client, cid, "two")
        assert reads == []
        assert (await client.get(f"/conversations/{cid}")).json()["has_context_items"] is False

        await add(client, cid, content="a note")
        conv = (await client.get(f"/conversations/{cid}")).json()
        assert conv["has_context_items"] is True
        reads.clear()
        await send(client, cid, "three")
        assert reads == [cid] and rec.requests[-1].messages[0].content == "[Context item]\na note"
        fork = (await client.post(f"/conversations/{cid}/fork", json={})).json()
        assert fork["has_context_items"] is True
