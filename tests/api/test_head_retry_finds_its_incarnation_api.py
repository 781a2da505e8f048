"""PUT .../head's retry after a lost version race (no If-Match, or `*`) re-reads the
conversation and must find the incarnation it resolved the target against (review R-H):
one created under the id since is a 404 `conversation_not_found`, left as it is. Before,
the retry wrote the old incarnation's message id as the successor's head (a message of
another lineage: a dangling head). The window is opened by wrapping update_conversation:
the first attempt finds the id deleted and created again, and loses the version race."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.errors import VersionConflict
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import assert_problem
from tests.conftest import app_and_manager, make_settings

BODY = {"pack_id": "general-assistant", "prompt_name": "chat", "conversation_id": "hr"}


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("if_match", [None, "*"])
async def test_a_head_move_retry_never_moves_a_successor(
    backend: str, if_match: str | None, tmp_path: Path
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(make_settings(tmp_path, state_url=url)) as (client, manager),
    ):
        body = {**BODY, "user_id": "u"}
        assert (await client.post("/conversations", json=body)).status_code == 201
        r = await client.post("/conversations/hr/messages", json={"content": "old"})
        assert r.status_code == 200, r.text
        target = r.json()["messages"][0]["id"]
        store: Any = manager.tree._store
        original = store.update_conversation
        calls = 0

        async def racing(conversation: Any, *, expected_version: int) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                assert await store.delete_conversation("hr")
                assert (await client.post("/conversations", json=body)).status_code == 201
                raise VersionConflict("a concurrent PATCH")
            return await original(conversation, expected_version=expected_version)

        store.update_conversation = racing
        headers = {} if if_match is None else {"If-Match": if_match}
        r = await client.put("/conversations/hr/head", json={"message_id": target}, headers=headers)
        store.update_conversation = original
        assert_problem(r, 404, "conversation_not_found")
        successor = (await client.get("/conversations/hr")).json()
        assert successor["head_message_id"] is None and successor["version"] == 1, successor
