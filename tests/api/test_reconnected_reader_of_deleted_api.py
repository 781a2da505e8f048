"""A reader that reconnected past `run.created` (`Last-Event-ID`/`?after=`) and is behind
when its deleted conversation's run ends and is erased still gets exactly one terminal
event (review R3c: the synthesized `run.failed` needed to have seen `run.created`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import create_conv
from tests.conftest import app_and_manager


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_reconnected_reader_behind_still_gets_the_terminal_event(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with state_url_for(backend, tmp_path) as url:
        settings = settings_factory(state_url=url, mock_delay_ms=30)
        async with app_and_manager(settings) as (client, manager):
            cid = (await create_conv(client))["id"]
            body = {"content": "a long secret " * 20}
            sending = asyncio.create_task(client.post(f"/conversations/{cid}/messages", json=body))
            async with asyncio.timeout(10):
                while (run_id := await manager.coordinator.locks.holder(cid)) is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            reader = manager.runs.events(run_id, after=1)  # a reconnect: run.created already seen
            seen = [(await anext(reader)).type, (await anext(reader)).type]  # then falls behind
            assert (await client.delete(f"/conversations/{cid}")).status_code == 204
            assert (await asyncio.wait_for(sending, 10)).status_code == 404
            await asyncio.sleep(1.0)  # the run's end, and its erasure, happen meanwhile
            async with asyncio.timeout(10):
                seen += [e.type async for e in reader]
            assert seen[-1] == "run.failed", seen
