"""DELETE /conversations/{id} deletes the conversation it read and authorized, never one
created under its id since (review R-A): the store's delete names that incarnation, and
with If-Match tags its version (a change committed between the read and the delete is a
412, the If-Match of 8f9c63f is atomic now).

Before, the store deleted whatever was under the id: alice's conversation deleted by a
concurrent DELETE of hers and bob's created under the id (ids are global) in that window,
alice's DELETE (204) deleted BOB's, with or without an If-Match naming her ETag. The
window is opened deterministically: `lineage_media_ids`, the store call between the read
and the delete in `ConversationService.delete`, runs the concurrent requests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.settings import ApiKey
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import assert_problem
from tests.conftest import app_and_manager, make_settings

KEYS = [
    ApiKey(key="alice-key", role="user", user_id="alice"),
    ApiKey(key="bob-key", role="user", user_id="bob"),
]
ALICE = {"Authorization": "Bearer alice-key"}
BOB = {"Authorization": "Bearer bob-key"}
BODY = {"pack_id": "general-assistant", "prompt_name": "chat", "conversation_id": "shared-id"}


def in_the_window(store: Any, meanwhile: Callable[[], Awaitable[None]]) -> None:
    """Run `meanwhile` once, between the DELETE's read and its store delete."""
    original = store.lineage_media_ids
    ran = False

    async def racing(lineage_id: str) -> list[str]:
        nonlocal ran
        if not ran:
            ran = True
            await meanwhile()
        result: list[str] = await original(lineage_id)
        return result

    store.lineage_media_ids = racing


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("guarded", [True, False], ids=["if-match", "plain"])
async def test_a_delete_never_deletes_another_incarnation(
    backend: str, guarded: bool, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, auth="keys", api_keys=KEYS)
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(settings.model_copy(update={"state_url": url})) as (client, manager),
    ):
        r = await client.post("/conversations", json=BODY, headers=ALICE)
        assert r.status_code == 201, r.text
        alice_tag = r.headers["etag"]
        store: Any = manager.conversations._store

        async def deleted_and_taken_by_bob() -> None:
            assert await store.delete_conversation("shared-id")  # alice's concurrent DELETE
            made = await client.post("/conversations", json=BODY, headers=BOB)
            assert made.status_code == 201, made.text
            r = await client.post(
                "/conversations/shared-id/messages", json={"content": "bob's"}, headers=BOB
            )
            assert r.status_code == 200, r.text

        in_the_window(store, deleted_and_taken_by_bob)
        headers = {**ALICE, "If-Match": alice_tag} if guarded else ALICE
        r = await client.delete("/conversations/shared-id", headers=headers)
        assert_problem(r, 404, "conversation_not_found")
        got = await client.get("/conversations/shared-id", headers=BOB)
        assert got.status_code == 200, f"alice's DELETE ({r.status_code}) deleted bob's"
        messages = await client.get("/conversations/shared-id/messages", headers=BOB)
        assert "bob's" in [m["content"] for m in messages.json()["data"]], messages.text


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_if_match_on_delete_holds_at_the_delete(backend: str, tmp_path: Path) -> None:
    """A PATCH committed between the DELETE's read (where the tag matched) and its delete:
    412 with listed tags, nothing deleted; `*` deletes."""
    settings = make_settings(tmp_path, auth="keys", api_keys=KEYS)
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(settings.model_copy(update={"state_url": url})) as (client, manager),
    ):
        r = await client.post("/conversations", json=BODY, headers=ALICE)
        assert r.status_code == 201, r.text
        tag = r.headers["etag"]
        store: Any = manager.conversations._store

        async def patched() -> None:
            r = await client.patch(
                "/conversations/shared-id", json={"metadata": {"k": "v"}}, headers=ALICE
            )
            assert r.status_code == 200, r.text

        in_the_window(store, patched)
        r = await client.delete("/conversations/shared-id", headers={**ALICE, "If-Match": tag})
        assert_problem(r, 412, "precondition_failed")
        got = await client.get("/conversations/shared-id", headers=ALICE)
        assert got.status_code == 200 and got.json()["metadata"] == {"k": "v"}, got.text

        in_the_window(store, patched)
        r = await client.delete("/conversations/shared-id", headers={**ALICE, "If-Match": "*"})
        assert r.status_code == 204, r.text
        assert (await client.get("/conversations/shared-id", headers=ALICE)).status_code == 404
