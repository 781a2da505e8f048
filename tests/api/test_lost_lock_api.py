"""A turn lock that fails to exclude (a lease lost mid-turn, a split brain) must not
corrupt a conversation: the head compare-and-set rejects the stale commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import app.lifespan
from app.coordination.base import Coordinator, TurnLease, TurnLocks
from app.coordination.memory import MemoryRunLog
from app.coordination.memory_idempotency import MemoryIdempotencyKeys
from app.settings import Settings
from app.stores.base import StateStore
from tests.api.helpers import create_conv
from tests.conftest import running_app


class _Granted(TurnLease):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    async def release(self) -> None:
        return None

    @property
    def lost(self) -> bool:
        return False  # it does not even know: the worst case


class BrokenLocks(TurnLocks):
    """Grants every request at once, as two instances would after a lease was lost."""

    async def acquire(self, conversation_id: str, run_id: str, *, wait_s: float) -> TurnLease:
        return _Granted(run_id)

    async def holder(self, conversation_id: str) -> str | None:
        return None


async def test_head_cas_rejects_the_stale_commit(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(settings: Settings, store: StateStore) -> Coordinator:
        return Coordinator(BrokenLocks(), MemoryIdempotencyKeys(), MemoryRunLog())

    monkeypatch.setattr(app.lifespan, "build_coordinator", broken)
    async with running_app(settings_factory(mock_delay_ms=20)) as client:
        conv = await create_conv(client)
        url = f"/conversations/{conv['id']}/messages"
        first, second = await asyncio.gather(
            client.post(url, json={"content": "a b c d"}),
            client.post(url, json={"content": "e f g h"}),
        )
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [200, 409], (first.text, second.text)
        loser = first if first.status_code == 409 else second
        assert loser.json()["code"] == "head_conflict"
        msgs = (await client.get(url)).json()["data"]
        assert [m["role"] for m in msgs] == ["user", "assistant"]
        assert msgs[1]["parent_id"] == msgs[0]["id"]
        state = (await client.get(f"/conversations/{conv['id']}")).json()
        assert state["message_count"] == 2 and state["head_message_id"] == msgs[1]["id"]


class _Lost(_Granted):
    @property
    def lost(self) -> bool:
        return True  # the coordination backend stopped answering the renewals


class LosingLocks(BrokenLocks):
    async def acquire(self, conversation_id: str, run_id: str, *, wait_s: float) -> TurnLease:
        return _Lost(run_id)


async def test_a_lost_lease_is_not_a_provider_error(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    def losing(settings: Settings, store: StateStore) -> Coordinator:
        return Coordinator(LosingLocks(), MemoryIdempotencyKeys(), MemoryRunLog())

    monkeypatch.setattr(app.lifespan, "build_coordinator", losing)
    async with running_app(settings_factory()) as client:
        conv = await create_conv(client)
        url = f"/conversations/{conv['id']}/messages"
        r = await client.post(url, json={"content": "hello"})
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "turn_lock_lost"
        assert (await client.get(url)).json()["data"] == []  # nothing committed
