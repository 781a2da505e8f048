"""A fork deleted and forked again under its id is another conversation (outside tester
T1). A fork keeps its source's lineage, so the new fork has the deleted one's id AND
lineage, often its head too: what told a conversation from a namesake created under its
id since (the lineage) does not tell these two apart. Each incarnation has an identity of
its own (its `created_at`): neither a turn in flight on the deleted fork, nor the messages
it wrote, nor its Idempotency-Keys reach the new one. On every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from httpx import AsyncClient, Response

from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import assert_problem

SOURCE = {"pack_id": "general-assistant", "prompt_name": "chat", "conversation_id": "alice-a"}
FORK = "shared-b"
LONG = "BOB PRIVATE " + " ".join(f"w{i}" for i in range(25))  # ~0.5 s with a 20 ms delay


async def _source(client: AsyncClient) -> None:
    r = await client.post("/conversations", json={**SOURCE, "user_id": "alice"})
    assert r.status_code == 201, r.text
    r = await client.post("/conversations/alice-a/messages", json={"content": "alice question"})
    assert r.status_code == 200, r.text


async def _fork(client: AsyncClient, source: str, user: str, fork_id: str = FORK) -> None:
    r = await client.post(
        f"/conversations/{source}/fork", json={"conversation_id": fork_id, "user_id": user}
    )
    assert r.status_code == 201, r.text


async def _contents(client: AsyncClient, cid: str) -> list[str]:
    r = await client.get(f"/conversations/{cid}/messages")
    assert r.status_code == 200, r.text
    return [m["content"] for m in r.json()["data"]]


async def _bobs_turn_running_on_the_fork(client: AsyncClient, path: str) -> asyncio.Task[Response]:
    """The source, bob's fork of it under FORK, and a long turn of bob's holding the fork."""
    await _source(client)
    await _fork(client, "alice-a", "bob")
    running = asyncio.create_task(client.post(path, json={"content": LONG}))
    for _ in range(300):
        if (await client.get(f"/conversations/{FORK}")).json()["status"] == "running":
            return running
        await asyncio.sleep(0.01)
    raise AssertionError("bob's turn never held the fork")


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_turn_in_flight_on_a_deleted_fork_never_lands_in_the_fork_made_under_its_id(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with app_on(backend, tmp_path, settings_factory(mock_delay_ms=20)) as client:
        path = f"/conversations/{FORK}/messages"
        running = await _bobs_turn_running_on_the_fork(client, path)
        queued = asyncio.create_task(client.post(path, json={"content": "queued behind"}))
        await asyncio.sleep(0.05)
        assert (await client.delete(f"/conversations/{FORK}")).status_code == 204
        await _fork(client, "alice-a", "alice")  # same id, same lineage, same head
        assert not running.done(), "the turn was still running when the id was forked again"
        assert_problem(await running, 404, "conversation_not_found")
        assert_problem(await queued, 404, "conversation_not_found")
        assert await _contents(client, FORK) == ["alice question", "echo: alice question"]
        conv = (await client.get(f"/conversations/{FORK}")).json()
        assert conv["user_id"] == "alice" and conv["message_count"] == 2
        assert conv["usage"]["total_tokens"] == 0


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_deleted_forks_messages_and_keys_are_not_the_new_forks_under_its_id(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with app_on(backend, tmp_path, settings_factory()) as client:
        await _source(client)
        await _fork(client, "alice-a", "bob")
        send = f"/conversations/{FORK}/messages"
        secret = {"content": "BOB SECRET: 123-45-6789"}
        bob = await client.post(send, json=secret, headers={"Idempotency-Key": "turn-1"})
        assert bob.status_code == 200, bob.text
        bob_user = bob.json()["messages"][0]["id"]
        # an edit of bob's message: a branch beside it, then a second turn on that branch
        edit = await client.post(f"{send}/{bob_user}/edit", json={"content": "BOB EDIT"})
        assert edit.status_code == 200, edit.text
        two = await client.post(
            send, json={"content": "BOB TWO"}, headers={"Idempotency-Key": "turn-2"}
        )
        assert two.status_code == 200, two.text
        await _fork(client, FORK, "bob", "bob-c")  # keeps bob's messages stored
        assert (await client.delete(f"/conversations/{FORK}")).status_code == 204
        await _fork(client, "alice-a", "alice")  # same id, same lineage, same head

        branches = await client.get(f"/conversations/{FORK}/branches")
        assert branches.status_code == 200
        previews = [b["preview"] for b in branches.json()["data"]]
        assert previews == ["echo: alice question"], previews
        # (bob's first turn went with the deletion; C keeps the edit's branch stored)
        bobs = [m["id"] for r in (edit, two) for m in r.json()["messages"]]
        for message_id in bobs:
            r = await client.put(f"/conversations/{FORK}/head", json={"message_id": message_id})
            assert_problem(r, 404, "message_not_found")
            r = await client.get(f"/conversations/{FORK}/messages/{message_id}")
            assert_problem(r, 404, "message_not_found")
            r = await client.post(f"/conversations/{FORK}/fork", json={"message_id": message_id})
            assert_problem(r, 404, "message_not_found")
        shown = (await client.get(send)).json()["data"]
        r = await client.get(
            f"{send}/{shown[-1]['id']}"
        )  # alice's reply: bob's turns hang under it
        assert r.status_code == 200, r.text
        assert r.json()["children_ids"] == [], r.json()
        export = await client.get(f"/conversations/{FORK}/export")
        assert export.status_code == 200 and "BOB" not in export.text
        assert await _contents(client, FORK) == ["alice question", "echo: alice question"]

        # bob's fork C still has all of it
        assert "BOB TWO" in await _contents(client, "bob-c")


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_deleted_forks_idempotency_keys_are_free_on_the_fork_made_under_its_id(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with app_on(backend, tmp_path, settings_factory()) as client:
        await _source(client)
        await _fork(client, "alice-a", "bob")
        send = f"/conversations/{FORK}/messages"
        secret = {"content": "BOB SECRET"}
        runs = []
        for key in ("turn-1", "turn-2"):
            r = await client.post(send, json=secret, headers={"Idempotency-Key": key})
            assert r.status_code == 200, r.text
            runs.append(r.json()["run_id"])
        assert (await client.delete(f"/conversations/{FORK}")).status_code == 204
        await _fork(client, "alice-a", "alice")
        # another body: was 422 idempotency_key_reused (telling alice bob used the key)
        r = await client.post(send, json={"content": "mine"}, headers={"Idempotency-Key": "turn-1"})
        assert r.status_code == 200, r.text
        # bob's body: was 409 conversation_busy for the key's 24 h (its run was erased)
        r = await client.post(send, json=secret, headers={"Idempotency-Key": "turn-2"})
        assert r.status_code == 200, r.text
        assert r.json()["run_id"] not in runs
        assert await _contents(client, FORK) == [
            "alice question",
            "echo: alice question",
            "mine",
            "echo: mine",
            "BOB SECRET",
            "echo: BOB SECRET",
        ]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_deleted_forks_run_is_not_the_new_forks_under_its_id(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with app_on(backend, tmp_path, settings_factory(mock_delay_ms=20)) as client:
        path = f"/conversations/{FORK}/messages"
        running = await _bobs_turn_running_on_the_fork(client, path)
        busy = await client.post(path, json={"content": "x", "if_busy": "reject"})
        run_id = assert_problem(busy, 409, "conversation_busy")["run_id"]
        assert (await client.get(f"/conversations/{FORK}/runs/{run_id}")).status_code == 200
        assert (await client.delete(f"/conversations/{FORK}")).status_code == 204
        await _fork(client, "alice-a", "alice")
        assert not running.done(), "bob's run ended before the id was forked again"
        runs = f"/conversations/{FORK}/runs/{run_id}"
        assert_problem(await client.get(runs), 404, "run_not_found")  # was bob's running run
        assert_problem(await client.get(f"{runs}/events"), 404, "run_not_found")
        assert_problem(await client.post(f"{runs}/cancel"), 404, "run_not_found")
        assert_problem(await running, 404, "conversation_not_found")
        assert_problem(await client.get(runs), 404, "run_not_found")
        assert await _contents(client, FORK) == ["alice question", "echo: alice question"]
