"""R3 (d0895ec misses a case): a create key's record names the lineage it created, and a
conversation found under the id is taken for the key's own when its lineage matches. A
fork has its source's lineage and may take a client-chosen id, so after the key's
conversation is deleted a fork of its surviving fork can take the id with that very
lineage: the retry with the key answers the fork (201, forked_from set, the fork's
metadata) as the conversation it created, the defect the commit says is gone ("never that
other conversation as its own"). Copy into tests/api/ to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import assert_problem
from tests.conftest import make_settings

BODY = {
    "pack_id": "general-assistant",
    "prompt_name": "chat",
    "user_id": "keyed",
    "conversation_id": "keyed-x",
    "metadata": {"made_by": "keyed create"},
}


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_create_retry_after_delete_is_409_when_a_fork_took_the_id(
    backend: str, tmp_path: Path
) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        key = {"Idempotency-Key": "create-x"}
        first = await client.post("/conversations", json=BODY, headers=key)
        assert first.status_code == 201, first.text
        r = await client.post("/conversations/keyed-x/fork", json={"conversation_id": "keyed-y"})
        assert r.status_code == 201, r.text
        assert (await client.delete("/conversations/keyed-x")).status_code == 204
        r = await client.post(
            "/conversations/keyed-y/fork",
            json={"conversation_id": "keyed-x", "metadata": {"made_by": "a fork"}},
        )
        assert r.status_code == 201, r.text
        retry = await client.post("/conversations", json=BODY, headers=key)
        # Another request (the fork) made the id since: 409, as for a plain create.
        assert_problem(retry, 409, "conversation_exists")
