"""A failed run answers a non-streaming request with its whole problem, kept through the
run record: status, code, headers (a provider's Retry-After) and extra fields (the busy
run's id); a lost turn lock and an unconfigured provider keep codes of their own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import app.lifespan
from app.coordination.base import Coordinator, TurnLease, TurnLocks
from app.coordination.memory import MemoryRunLog
from app.coordination.memory_idempotency import MemoryIdempotencyKeys
from app.coordination.memory_locks import MemoryTurnLocks
from app.settings import Settings
from app.stores.base import StateStore
from tests.api.helpers import assert_problem, create_conv
from tests.conftest import running_app


async def test_provider_rate_limit_keeps_retry_after(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(provider_max_retries=0)) as client:
        conv = await create_conv(client)
        r = await client.post(
            f"/conversations/{conv['id']}/messages",
            json={"content": "hi", "metadata": {"mock_fail": "rate_limit"}},
        )
        body = assert_problem(r, 429, "rate_limited")
        assert r.headers["Retry-After"] == "1"
        assert body["retry_after_s"] == 1.0


async def test_lock_timeout_keeps_the_busy_run_id(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(mock_delay_ms=150, turn_lock_timeout_s=0.3)
    async with running_app(settings) as client:
        conv = await create_conv(client)
        url = f"/conversations/{conv['id']}/messages"
        first = asyncio.create_task(client.post(url, json={"content": "a b c d e f g h"}))
        await asyncio.sleep(0.3)  # the first turn holds the lock, streaming slowly
        r = await client.post(url, json={"content": "second"})  # enqueue, times out
        body = assert_problem(r, 409, "conversation_busy")
        done = await first
        assert done.status_code == 200, done.text
        assert body["run_id"] == done.json()["run_id"]


class _LostLease(TurnLease):
    def __init__(self, inner: TurnLease) -> None:
        self.run_id = inner.run_id
        self._inner = inner

    async def release(self) -> None:
        await self._inner.release()

    @property
    def lost(self) -> bool:
        return True


class LosingLocks(TurnLocks):
    """Every lease is lost by the time the turn would commit."""

    def __init__(self) -> None:
        self._inner = MemoryTurnLocks()

    async def acquire(self, conversation_id: str, run_id: str, *, wait_s: float) -> TurnLease:
        return _LostLease(await self._inner.acquire(conversation_id, run_id, wait_s=wait_s))

    async def holder(self, conversation_id: str) -> str | None:
        return await self._inner.holder(conversation_id)


async def test_lost_lock_is_not_a_provider_error(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    def losing(settings: Settings, store: StateStore) -> Coordinator:
        return Coordinator(LosingLocks(), MemoryIdempotencyKeys(), MemoryRunLog())

    monkeypatch.setattr(app.lifespan, "build_coordinator", losing)
    async with running_app(settings_factory()) as client:
        conv = await create_conv(client)
        url = f"/conversations/{conv['id']}/messages"
        assert_problem(await client.post(url, json={"content": "hi"}), 503, "turn_lock_lost")
        assert (await client.get(url)).json()["data"] == []  # nothing committed


async def test_unconfigured_provider_is_not_a_provider_error(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(openai_api_key="sk-test")) as client:
        conv = await create_conv(client, provider="openai", model="gpt-4o-mini")
    async with running_app(settings_factory()) as client:  # restarted without the key
        r = await client.post(f"/conversations/{conv['id']}/messages", json={"content": "hi"})
        assert_problem(r, 503, "provider_not_configured")
        await asyncio.sleep(0)
