"""Review R-I: 8f9c63f's "a head move with listed tags whose write loses the version race
is 412" (`TreeService._move_head`) had no test. A change (a PATCH, say) that lands between
the head move's read, where its `If-Match` held, and its write: with listed tags the move
is refused (412 `precondition_failed`, the head where it was), with `*` it re-reads and
moves. On every backend."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.domain import Conversation
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import assert_problem
from tests.conftest import app_and_manager, make_settings

BODY = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "u"}


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("route", ["head", "rollback"])
async def test_a_head_move_that_loses_the_version_race_is_412_with_tags_and_retried_with_star(
    backend: str, route: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(make_settings(tmp_path, state_url=url)) as (client, manager),
    ):
        r = await client.post("/conversations", json={**BODY, "conversation_id": "race"})
        assert r.status_code == 201, r.text
        r = await client.post("/conversations/race/messages", json={"content": "one"})
        assert r.status_code == 200, r.text
        user_id = r.json()["messages"][0]["id"]
        store = manager.store
        real = store.update_conversation
        raced: list[int] = []

        async def a_patch_lands_first(conv: Conversation, **kw: Any) -> Conversation:
            if not raced:  # once: what a concurrent PATCH would commit meanwhile
                fresh = await store.get_conversation(conv.id, now=datetime.now(UTC))
                assert fresh is not None
                raced.append(fresh.version)
                await real(
                    fresh.model_copy(update={"metadata": {"raced": "1"}}),
                    expected_version=fresh.version,
                )
            return await real(conv, **kw)

        monkeypatch.setattr(store, "update_conversation", a_patch_lands_first)
        path = "/conversations/race/" + ("head" if route == "head" else "rollback")
        call = client.put if route == "head" else client.post
        tag = (await client.get("/conversations/race")).headers["etag"]
        r = await call(path, json={"message_id": user_id}, headers={"If-Match": tag})
        assert_problem(r, 412, "precondition_failed")
        after = (await client.get("/conversations/race")).json()
        assert raced and after["version"] == raced[0] + 1  # the race's write alone
        assert after["head_message_id"] != user_id and after["metadata"] == {"raced": "1"}

        raced.clear()
        r = await call(path, json={"message_id": user_id}, headers={"If-Match": "*"})
        assert r.status_code == 200, r.text
        assert r.json()["head_message_id"] == user_id
        assert r.json()["metadata"] == {"raced": "1"}
