"""A checkpoint or a context item is stored on the conversation its request read and
authorized, never on one created under its id since (review R-A2): the store's write names
that incarnation; a namesake found there is a 404 `conversation_not_found` and nothing is
stored. Before, alice's checkpoint (her name, metadata and a message id of her lineage) or
context item (prompt text of bob's next turns) landed on bob's conversation created under
the id after hers was deleted. The window is opened deterministically by wrapping the
store call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from app.errors import VersionConflict
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
CID = "shared-cp"
BODY = {"pack_id": "general-assistant", "prompt_name": "chat", "conversation_id": CID}


async def taken_by_bob(store: Any, client: httpx.AsyncClient) -> None:
    """Alice's conversation deleted (her concurrent DELETE), bob's created under its id."""
    assert await store.delete_conversation(CID)
    made = await client.post("/conversations", json=BODY, headers=BOB)
    assert made.status_code == 201, made.text


async def alices(client: httpx.AsyncClient) -> None:
    assert (await client.post("/conversations", json=BODY, headers=ALICE)).status_code == 201
    r = await client.post(f"/conversations/{CID}/messages", json={"content": "a"}, headers=ALICE)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_checkpoint_never_lands_on_another_incarnation(
    backend: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, auth="keys", api_keys=KEYS)
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(settings.model_copy(update={"state_url": url})) as (client, manager),
    ):
        await alices(client)
        store: Any = manager.tree._store
        original = store.create_checkpoint

        async def racing(checkpoint: Any, **kwargs: Any) -> Any:
            await taken_by_bob(store, client)
            return await original(checkpoint, **kwargs)

        store.create_checkpoint = racing
        r = await client.post(
            f"/conversations/{CID}/checkpoints",
            json={"name": "alice-private", "metadata": {"alice": "secret"}},
            headers=ALICE,
        )
        store.create_checkpoint = original
        assert_problem(r, 404, "conversation_not_found")
        listed = await client.get(f"/conversations/{CID}/checkpoints", headers=BOB)
        assert listed.status_code == 200, listed.text
        assert listed.json()["data"] == [], f"alice's checkpoint is on bob's: {listed.text}"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("window", ["save", "flag-retry"])
async def test_a_context_item_never_lands_on_another_incarnation(
    backend: str, window: str, tmp_path: Path
) -> None:
    """`save`: between the read (and flag) and the store's save. `flag-retry`: the first
    item's flag loses a version race (a turn committed) and its retry re-read the id,
    flagging bob's conversation and saving on it."""
    settings = make_settings(tmp_path, auth="keys", api_keys=KEYS)
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(settings.model_copy(update={"state_url": url})) as (client, manager),
    ):
        await alices(client)
        store: Any = manager.context_items._store
        name = "save_context_item" if window == "save" else "update_conversation"
        original = getattr(store, name)
        raced = False

        async def racing(*args: Any, **kwargs: Any) -> Any:
            nonlocal raced
            if not raced:
                raced = True
                await taken_by_bob(store, client)
                if window == "flag-retry":
                    raise VersionConflict("a turn committed meanwhile")
            return await original(*args, **kwargs)

        setattr(store, name, racing)
        r = await client.post(
            f"/conversations/{CID}/context", json={"content": "alice's notes"}, headers=ALICE
        )
        setattr(store, name, original)
        assert raced
        assert_problem(r, 404, "conversation_not_found")
        items = await client.get(f"/conversations/{CID}/context/items", headers=BOB)
        assert items.status_code == 200, items.text
        assert items.json()["data"] == [], f"alice's item is on bob's: {items.text}"
        bob = (await client.get(f"/conversations/{CID}", headers=BOB)).json()
        assert bob["has_context_items"] is False and bob["version"] == 1, bob
