"""A `POST /conversations` retried with its `Idempotency-Key` after the conversation it
created was deleted creates it afresh (a new lineage), instead of 404 for the key's 24 h
(outside tester T17); a retry while it exists still returns it. Every store backend (and
its coordination backend)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.conftest import make_settings, running_app

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
    async with (
        state_url_for(backend, tmp_path) as url,
        running_app(make_settings(tmp_path, state_url=url)) as client,
    ):
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
