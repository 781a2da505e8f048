"""The Redis commands of one turn on a single server (issue 15: each is a round trip):
the conversation read, then scripts only. The run's creation takes the turn lock in the
same script (`RunLog.create_and_publish_locking`), the `running` status rides with the
first event, the reply's last delta with its `message.completed` (`RunLog.publish_many`),
the end releases the lock in its own script: 6 commands (8 before the lock rode with the
creation and the last delta with the completion), streamed or not. A turn whose
conversation is busy still waits for the lock and then runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.client import Redis

from app.settings import Settings
from tests.api.backends import state_url_for
from tests.api.helpers import create_conv, send
from tests.api.test_turn_reads_api import counting_app

pytestmark = pytest.mark.redis


@contextmanager
def _commands() -> Iterator[list[str]]:
    """Every command any Redis client of the process sends meanwhile (pipelines aside)."""
    sent: list[str] = []
    original = Redis.execute_command

    async def counted(self: Redis, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await original(self, *args, **options)

    Redis.execute_command = counted  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        Redis.execute_command = original  # type: ignore[method-assign]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_turn_sends_six_commands(
    stream: bool, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with (
        state_url_for("redis", tmp_path) as url,
        counting_app(settings_factory(state_url=url)) as (client, _, _),
    ):
        cid = (await create_conv(client))["id"]
        for i in range(2):  # (scripts loaded, the lock's stamp known)
            await send(client, cid, f"warm {i}")
        with _commands() as sent:
            r = await client.post(
                f"/conversations/{cid}/messages", json={"content": "hello", "stream": stream}
            )
            assert r.status_code == 200, r.text
            await asyncio.sleep(0.05)  # (anything sent after the answer counts too)
        assert sent == ["HGETALL"] + ["EVALSHA"] * 5, sent


async def test_an_enqueued_turn_waits_for_the_lock_then_runs(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with (
        state_url_for("redis", tmp_path) as url,
        counting_app(settings_factory(state_url=url, mock_delay_ms=20)) as (client, manager, _),
    ):
        cid = (await create_conv(client))["id"]
        first = asyncio.create_task(send(client, cid, "a b c d e f"))
        for _ in range(200):
            if await manager.coordinator.locks.holder(cid) is not None:
                break
            await asyncio.sleep(0.005)
        second = await send(client, cid, "after", if_busy="enqueue")
        one = await first
        assert second["messages"][0]["parent_id"] == one["messages"][-1]["id"]
        assert await manager.coordinator.locks.holder(cid) is None
