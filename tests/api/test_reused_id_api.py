"""Conversation ids are reusable: a conversation deleted and re-created under its id (by
another user, say) is another conversation. Neither a turn in flight or queued on the old
one, nor the old one's runs and Idempotency-Keys, may reach the new one (outside tester T4,
T5: alice's turn committed into bob's conversation; bob read alice's run events and got her
run back for his same-key send). On every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import assert_problem

CREATE = {"pack_id": "general-assistant", "prompt_name": "chat", "conversation_id": "reused-1"}
LONG = " ".join(f"w{i}" for i in range(25))  # ~25 mock tokens: a turn of ~0.5 s


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_turns_of_a_deleted_conversation_never_land_in_its_successor(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with app_on(backend, tmp_path, settings_factory(mock_delay_ms=20)) as client:
        assert (await client.post("/conversations", json={**CREATE, "user_id": "alice"})).is_success
        path = "/conversations/reused-1/messages"
        running = asyncio.create_task(client.post(path, json={"content": LONG}))
        for _ in range(300):  # until the turn holds the conversation
            if (await client.get("/conversations/reused-1")).json()["status"] == "running":
                break
            await asyncio.sleep(0.01)
        queued = asyncio.create_task(client.post(path, json={"content": "queued behind"}))
        await asyncio.sleep(0.05)
        assert (await client.delete("/conversations/reused-1")).status_code == 204  # at once
        r = await client.post("/conversations", json={**CREATE, "user_id": "bob"})
        assert r.status_code == 201
        assert not running.done(), "the turn was still running when bob created the id"
        assert_problem(await running, 404, "conversation_not_found")
        assert_problem(await queued, 404, "conversation_not_found")
        bobs = await client.get(path)
        assert bobs.status_code == 200 and bobs.json()["data"] == []
        assert (await client.get("/conversations/reused-1")).json()["message_count"] == 0


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_deleted_conversations_runs_and_keys_are_not_its_successors(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with app_on(backend, tmp_path, settings_factory()) as client:
        assert (await client.post("/conversations", json={**CREATE, "user_id": "alice"})).is_success
        path = "/conversations/reused-1/messages"
        key = {"Idempotency-Key": "m-1"}
        alice = await client.post(path, json={"content": "my secret"}, headers=key)
        assert alice.status_code == 200
        run_id = alice.json()["run_id"]
        assert (await client.delete("/conversations/reused-1")).status_code == 204
        assert (await client.post("/conversations", json={**CREATE, "user_id": "bob"})).is_success
        runs = f"/conversations/reused-1/runs/{run_id}"
        assert_problem(await client.get(runs), 404, "run_not_found")
        assert_problem(await client.get(f"{runs}/events"), 404, "run_not_found")
        bob = await client.post(path, json={"content": "my secret"}, headers=key)
        assert bob.status_code == 200 and bob.json()["run_id"] != run_id
        stored = (await client.get(path)).json()["data"]
        assert [m["run_id"] for m in stored] == [bob.json()["run_id"]] * 2
