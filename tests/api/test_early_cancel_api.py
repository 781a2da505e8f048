"""A run cancelled before its task has taken a step still ends `cancelled` and frees what
it holds (`app.manager.run_tasks`): an `if_busy: interrupt` send that finds the holder
of the turn lock right after that holder's admission used to cancel a task that never
ran, leaving its record `queued`, its lease renewed, its limiter slot taken and its
waiters waiting forever (found by the outside tester under reject + interrupt races)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from tests.api.backends import state_url_for
from tests.api.helpers import create_conv
from tests.conftest import app_and_manager

CONVERSATIONS = 8
INTERRUPTS = 3


async def _send(client: httpx.AsyncClient, conv_id: str, text: str, if_busy: str) -> int:
    body = {"content": text, "if_busy": if_busy}
    r = await client.post(f"/conversations/{conv_id}/messages", json=body)
    return r.status_code


@pytest.mark.parametrize("backend", ["memory", "redis"])  # in-process locks; Redis leases
async def test_reject_and_interrupt_sends_racing_all_end_and_free_the_conversation(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(mock_delay_ms=20)
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(settings.model_copy(update={"state_url": url})) as (client, manager),
    ):
        convs = [await create_conv(client) for _ in range(CONVERSATIONS)]

        async def race(conv_id: str) -> list[int]:
            sends = [_send(client, conv_id, "r", "reject")]
            sends += [_send(client, conv_id, f"i{n}", "interrupt") for n in range(INTERRUPTS)]
            return list(await asyncio.gather(*sends))

        async with asyncio.timeout(30):  # a stuck run never answers its request
            statuses = await asyncio.gather(*(race(c["id"]) for c in convs))
        assert {s for row in statuses for s in row} <= {200, 409}, statuses
        assert manager.runs.active == 0
        for conv in convs:  # nothing holds any conversation any more
            assert await _send(client, conv["id"], "after", "reject") == 200
