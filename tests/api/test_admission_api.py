"""Overload: requests beyond `PARLEY_ADMISSION_CONCURRENCY` queue for a slot; one that waits
past `PARLEY_ADMISSION_TIMEOUT_S` is 503 `overloaded` with Retry-After and stores nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from app.manager.manager import ConversationManager
from app.settings import Settings
from tests.api.export_helpers import export_doc
from tests.api.helpers import assert_problem, create_conv, send
from tests.api.test_import_api import _promptkit_go_state
from tests.conftest import app_and_manager


@asynccontextmanager
async def slot_held(manager: ConversationManager) -> AsyncIterator[None]:
    """A slot held by another task (the in-process client runs the app in the caller's
    task, and a task holding a slot re-enters `admit`)."""
    entered, done = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with manager.admission.admit():
            entered.set()
            await done.wait()

    task = asyncio.create_task(hold())
    await entered.wait()
    try:
        yield
    finally:
        done.set()
        await task


async def test_beyond_the_timeout_turns_and_creations_are_503_overloaded_and_store_nothing(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(admission_concurrency=1, admission_timeout_s=0.2)
    async with app_and_manager(settings) as (client, manager):
        conv = await create_conv(client)
        async with slot_held(manager):  # the one slot is busy
            r = await client.post(f"/conversations/{conv['id']}/messages", json={"content": "q"})
            body = assert_problem(r, 503, "overloaded")
            assert r.headers["retry-after"] == "1" and "0.2 s" in body["detail"]
            r = await client.post(
                "/conversations",
                json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "bob"},
            )
            assert_problem(r, 503, "overloaded")
            reads = await client.get(f"/conversations/{conv['id']}/messages")  # not gated
            assert reads.status_code == 200 and reads.json()["data"] == []
        listed = await client.get("/conversations", params={"user_id": "bob"})
        assert listed.status_code == 200 and listed.json()["data"] == []
        assert (await client.get(f"/conversations/{conv['id']}")).json()["message_count"] == 0
        assert (await send(client, conv["id"], "now there is room"))["status"] == "completed"


async def test_within_the_timeout_a_queued_turn_waits_and_runs(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(admission_concurrency=1, admission_timeout_s=10)
    async with app_and_manager(settings) as (client, manager):
        conv = await create_conv(client)
        async with slot_held(manager):
            queued = asyncio.create_task(send(client, conv["id"], "wait for me"))
            for _ in range(200):
                if manager.admission.waiting:
                    break
                await asyncio.sleep(0.01)
            assert manager.admission.waiting == 1 and not queued.done()
        assert (await queued)["status"] == "completed"
        assert (await client.get(f"/conversations/{conv['id']}")).json()["message_count"] == 2


async def test_forks_and_imports_are_gated_like_creations(
    settings_factory: Callable[..., Settings],
) -> None:
    """A fork or an import past the timeout is 503 `overloaded` and creates nothing; with
    room again both work (review F4: they were not gated)."""
    settings = settings_factory(admission_concurrency=1, admission_timeout_s=0.2)
    async with app_and_manager(settings) as (client, manager):
        conv = await create_conv(client)
        await send(client, conv["id"], "hello")
        doc = await export_doc(client, conv["id"])
        async with slot_held(manager):  # the one slot is busy
            fork = await client.post(
                f"/conversations/{conv['id']}/fork", json={"conversation_id": "forked-1"}
            )
            assert_problem(fork, 503, "overloaded")
            imported = await client.post(
                "/conversations/import", params={"conversation_id": "imported-1"}, json=doc
            )
            assert_problem(imported, 503, "overloaded")
        for cid in ("forked-1", "imported-1"):
            assert_problem(await client.get(f"/conversations/{cid}"), 404, "conversation_not_found")
        fork = await client.post(
            f"/conversations/{conv['id']}/fork", json={"conversation_id": "forked-1"}
        )
        assert fork.status_code == 201, fork.text
        imported = await client.post(
            "/conversations/import", params={"conversation_id": "imported-1"}, json=doc
        )
        assert imported.status_code == 201, imported.text
        assert manager.admission.active == 0 and manager.admission.waiting == 0


async def test_a_promptkit_import_takes_one_slot(
    settings_factory: Callable[..., Settings],
) -> None:
    """A PromptKit state's import creates its conversation inside its own admission: with
    one slot on an idle instance it succeeds (review R1: it waited for a second slot and
    was 503 `overloaded`)."""
    settings = settings_factory(admission_concurrency=1, admission_timeout_s=0.3)
    async with app_and_manager(settings) as (client, manager):
        r = await client.post(
            "/conversations/import",
            params={"pack_id": "general-assistant", "prompt_name": "chat"},
            json=_promptkit_go_state(),
        )
        assert r.status_code == 201, r.text
        assert manager.admission.active == 0 and manager.admission.waiting == 0
