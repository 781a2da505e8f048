"""A send's Idempotency-Key whose run was never created (its instance died between
reserving the key and creating the run: kill -9) is freed for the retry once that
instance is known dead, so the retry runs the turn once; while the reserving instance is
alive the retry answers 409 `conversation_busy` as before (`app.manager.run_keys`; the
key was poisoned for 24 h, found by the outside tester on SQLite)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.coordination.base import IdempotencyRecord
from app.domain import Conversation
from app.errors import StoreUnavailable
from app.manager import run_keys
from app.manager.manager import ConversationManager
from app.manager.run_keys import run_scope
from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import assert_problem, create_conv
from tests.conftest import app_and_manager

KEY = "orphan-key"


async def _orphan_the_key(
    manager: ConversationManager, monkeypatch: pytest.MonkeyPatch, send: Callable[[], Any]
) -> None:
    """A send that dies after reserving its key, before creating its run (no clean-up)."""

    async def die(*_args: Any, **_kwargs: Any) -> None:
        raise StoreUnavailable("killed")

    async def keep(*_args: Any, **_kwargs: Any) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr(manager.coordinator.runs, "create_and_publish", die)
        patch.setattr(manager.coordinator.runs, "create_and_publish_locking", die)
        patch.setattr(manager.coordinator.idempotency, "forget", keep)
        assert (await send()).status_code == 503


async def _reassign(manager: ConversationManager, scope: str, instance: str) -> None:
    """Rewrite the key's reserving instance (the dead one's id, as after a restart)."""
    keys = manager.coordinator.idempotency
    existing = await keys.reserve(scope, KEY, IdempotencyRecord("probe", "probe"), ttl_s=60)
    assert existing is not None and existing.ref != "probe"
    await keys.forget(scope, KEY, ref=existing.ref)
    moved = IdempotencyRecord(existing.fingerprint, existing.ref, {run_keys.ADMITTED_BY: instance})
    assert await keys.reserve(scope, KEY, moved, ttl_s=600) is None


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_dead_instances_orphaned_key_is_freed_for_the_retry(
    backend: str,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_keys, "ATTACH_WAIT_S", 0.2)
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(settings_factory(state_url=url)) as (client, manager),
    ):
        conv = await create_conv(client)
        url_ = f"/conversations/{conv['id']}/messages"

        def send() -> Any:
            return client.post(url_, json={"content": "once"}, headers={"Idempotency-Key": KEY})

        await _orphan_the_key(manager, monkeypatch, send)
        # its instance (this one) is alive: the admission may still be going on
        assert_problem(await send(), 409, "conversation_busy")
        await _reassign(manager, run_scope(Conversation.model_validate(conv)), "dead-instance")
        r = await send()
        assert r.status_code == 200, r.text
        again = await send()  # and from now on the key names that run
        assert again.status_code == 200 and again.json()["run_id"] == r.json()["run_id"]
        contents = [m["content"] for m in (await client.get(url_)).json()["data"]]
        assert contents.count("once") == 1, contents


async def test_a_retry_waiting_for_its_first_requests_run_holds_no_admission_slot(
    tmp_path: Path, settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one slot, a same-key retry polling for a run that does not exist yet (here:
    never) lends its slot meanwhile, so another conversation's turn goes through at once
    instead of after the retry's 3 x ATTACH_WAIT_S (review F4)."""
    monkeypatch.setattr(run_keys, "ATTACH_WAIT_S", 2.0)
    settings = settings_factory(admission_concurrency=1, admission_timeout_s=10)
    async with app_and_manager(settings) as (client, manager):
        conv, other = await create_conv(client), await create_conv(client)
        url_ = f"/conversations/{conv['id']}/messages"

        def send() -> Any:
            return client.post(url_, json={"content": "once"}, headers={"Idempotency-Key": KEY})

        await _orphan_the_key(manager, monkeypatch, send)
        retry = asyncio.create_task(send())  # waits ~6 s for the orphaned key's run
        await asyncio.sleep(0.5)
        assert not retry.done() and manager.admission.active == 0  # it lent its slot
        started = time.monotonic()
        r = await client.post(f"/conversations/{other['id']}/messages", json={"content": "hi"})
        assert r.status_code == 200 and time.monotonic() - started < 0.9
        assert not retry.done()
        assert_problem(await retry, 409, "conversation_busy")  # (its instance is alive)
