"""A run's `running` status is written with its first event, in one step
(`RunLog.save_and_publish`: one script on Redis, the event's write-behind batch on
PostgreSQL), not by a save of its own: a turn writes
its record twice (running with the first event, then its end with the terminal event).
A reader still sees `running` while the provider is called."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.coordination.base import RunLog
from app.settings import Settings
from tests.api.backends import state_url_for
from tests.api.helpers import create_conv, send
from tests.api.test_streaming_api import until_busy
from tests.api.test_turn_reads_api import counting_app


def _count_record_writes(runs: RunLog, calls: list[str]) -> None:
    """The manager's calls only (a log's `save_and_publish` may call its own `save`)."""
    depth = [0]
    for name in ("save", "save_and_publish", "save_and_publish_releasing"):
        original = getattr(runs, name)

        async def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            if depth[0] == 0:
                calls.append(_name)
            depth[0] += 1
            try:
                return await _original(*args)
            finally:
                depth[0] -= 1

        setattr(runs, name, counted)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_turn_saves_its_running_status_with_its_first_event(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        counting_app(settings_factory(state_url=url)) as (client, manager, _),
    ):
        cid = (await create_conv(client))["id"]
        calls: list[str] = []
        _count_record_writes(manager.coordinator.runs, calls)
        turn = await send(client, cid, "hello")
        # (the end: with the turn lock's release, `RunLog.save_and_publish_releasing`)
        assert calls == ["save_and_publish", "save_and_publish_releasing"], calls
        record = await manager.coordinator.runs.get(turn["run_id"])
        assert record is not None and record.run.status.value == "completed"


@pytest.mark.parametrize("backend", ["memory", "redis", "postgres"])
async def test_a_run_reads_running_while_its_provider_is_called(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        counting_app(settings_factory(state_url=url, mock_delay_ms=30)) as (client, manager, _),
    ):
        cid = (await create_conv(client))["id"]
        slow = asyncio.create_task(send(client, cid, "a b c d e f g h"))
        await until_busy(client, cid)
        run_id = await manager.coordinator.locks.holder(cid)
        assert run_id is not None
        for _ in range(200):  # the user message's event comes right after the lock
            r = await client.get(f"/conversations/{cid}/runs/{run_id}")
            if r.json()["status"] != "queued":
                break
            await asyncio.sleep(0.005)
        assert r.json()["status"] == "running"
        await slow
        assert (await client.get(f"/conversations/{cid}/runs/{run_id}")).json()["status"] == (
            "completed"
        )
