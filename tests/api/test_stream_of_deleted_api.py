"""A client streaming a turn whose conversation is deleted mid-run still gets exactly one
terminal event (run.failed conversation_not_found) although the run's end erases the
run's record and events (review R3)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

import app.manager.run_erasure
from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import create_conv
from tests.api.sse_parse import parse_sse
from tests.conftest import app_and_manager

TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.requires_action"}


@pytest.mark.parametrize("wait", ["follower", "executor"])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_streamed_turn_of_a_deleted_conversation_ends_with_run_failed(
    backend: str,
    wait: str,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if wait == "executor":
        monkeypatch.setattr(app.manager.run_erasure, "LIVE_WAIT_S", 0.0)
    async with state_url_for(backend, tmp_path) as url:
        settings = settings_factory(state_url=url, mock_delay_ms=30)
        async with app_and_manager(settings) as (client, manager):
            conv = await create_conv(client)
            cid = conv["id"]
            body = {"content": "a long secret " * 20, "stream": True}
            sending = asyncio.create_task(client.post(f"/conversations/{cid}/messages", json=body))
            async with asyncio.timeout(10):
                while await manager.coordinator.locks.holder(cid) is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            r = await client.delete(f"/conversations/{cid}")
            assert r.status_code == 204, r.text
            answer = await asyncio.wait_for(sending, timeout=10)
            assert answer.status_code == 200, answer.text
            events = parse_sse(answer.text)
            kinds = [e.event for e in events]
            assert sum(k in TERMINAL for k in kinds) == 1 and kinds[-1] == "run.failed", kinds
            assert events[-1].data["error"]["code"] == "conversation_not_found"
