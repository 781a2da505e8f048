"""A `POST /conversations` retried with its `Idempotency-Key` after the conversation it
created was deleted creates it afresh (a new lineage), instead of 404 for the key's 24 h
(outside tester T17); a retry while it exists still returns it. Every store backend (and
its coordination backend)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api.backends import ALL_BACKENDS, app_on
from tests.conftest import app_and_manager, make_settings

BODY = {
    "pack_id": "general-assistant",
    "prompt_name": "chat",
    "user_id": "t17",
    "conversation_id": "t17-conv",
}


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_keyed_create_after_its_conversation_was_deleted_creates_it_again(
    backend: str, tmp_path: Path
) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        key = {"Idempotency-Key": "create-t17-conv"}
        first = await client.post("/conversations", json=BODY, headers=key)
        assert first.status_code == 201
        again = await client.post("/conversations", json=BODY, headers=key)
        assert again.json()["lineage_id"] == first.json()["lineage_id"]
        assert (await client.delete("/conversations/t17-conv")).status_code == 204
        t = time.monotonic()
        recreated = await client.post("/conversations", json=BODY, headers=key)
        assert recreated.status_code == 201, recreated.text
        assert time.monotonic() - t < 2.0  # not after the wait for a creation in progress
        assert recreated.json()["lineage_id"] != first.json()["lineage_id"]
        replay = await client.post("/conversations", json=BODY, headers=key)
        assert replay.status_code == 201
        assert replay.json()["lineage_id"] == recreated.json()["lineage_id"]
        assert (await client.get("/conversations/t17-conv")).status_code == 200


@pytest.mark.parametrize("client_id", [True, False], ids=["client-id", "server-id"])
async def test_a_retry_that_missed_a_creation_finishing_meanwhile_returns_it(
    client_id: bool, tmp_path: Path
) -> None:
    """Outside tester T2 (2026-12-07): a same-key retry looked the conversation up while
    the first request was still storing it, then found the first request's finished mark
    and took it for "created and deleted since": it freed the key and created a second
    conversation (or answered 409 conversation_exists). Here the retry's look-up is held
    until the first request has stored and marked, then misses, as on PostgreSQL under
    load. Both requests must answer the one conversation."""
    async with app_and_manager(make_settings(tmp_path)) as (client, manager):
        marked = asyncio.Event()
        conversations = manager.conversations
        real_mark = conversations._marks.mark
        real_get = manager.store.get_conversation

        async def mark(*args: Any, **kwargs: Any) -> None:
            await real_mark(*args, **kwargs)
            marked.set()

        async def stale_get(conversation_id: str, *, now: Any) -> Any:
            found = await real_get(conversation_id, now=now)
            if found is None and not marked.is_set():
                await marked.wait()  # the creation finishes meanwhile: this read is stale
            return found

        conversations._marks.mark = mark  # type: ignore[method-assign]
        manager.store.get_conversation = stale_get  # type: ignore[method-assign]
        body = BODY if client_id else {k: v for k, v in BODY.items() if k != "conversation_id"}
        key = {"Idempotency-Key": f"t2-{client_id}"}
        first, retry = await asyncio.gather(
            client.post("/conversations", json=body, headers=key),
            client.post("/conversations", json=body, headers=key),
        )
        assert (first.status_code, retry.status_code) == (201, 201), (first.text, retry.text)
        assert first.json()["id"] == retry.json()["id"]
        listed = await client.get("/conversations", params={"user_id": "t17"})
        assert [c["id"] for c in listed.json()["data"]] == [first.json()["id"]]
