"""An event stream whose follow fails before its first event answers with that error (503
`store_unavailable`, Retry-After), not with a 200 whose body is cut before any event; a
first event slower than the wait still streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.coordination.base import RunEvent, RunRecord
from app.domain import Run, utcnow
from app.errors import StoreUnavailable
from app.manager.manager import ConversationManager
from tests.api.helpers import assert_problem, create_conv
from tests.conftest import app_and_manager, make_settings


def app_with_manager(
    tmp_path: Path, **overrides: Any
) -> AbstractAsyncContextManager[tuple[httpx.AsyncClient, ConversationManager]]:
    return app_and_manager(make_settings(tmp_path, **overrides))


async def live_run(manager: ConversationManager, conv: dict[str, Any]) -> str:
    """A run that is not finished, executed by no one here (as on another instance)."""
    run = Run(id="elsewhere", conversation_id=conv["id"], created_at=utcnow())
    runs = manager.coordinator.runs
    await runs.create(RunRecord(run=run, lineage_id=conv["lineage_id"]))
    await runs.publish(run.id, "run.created", {"run": run.model_dump(mode="json")})
    return run.id


async def test_a_follow_failing_before_its_first_event_is_a_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_with_manager(tmp_path, state_url="memory://") as (client, manager):
        conv = await create_conv(client)
        run_id = await live_run(manager, conv)

        async def unreachable(run_id: str, *, after: int) -> AsyncIterator[RunEvent]:
            raise StoreUnavailable("injected: the event log did not answer")
            yield  # pragma: no cover (an async generator)

        monkeypatch.setattr(manager.coordinator.runs, "follow", unreachable)
        r = await client.get(f"/conversations/{conv['id']}/runs/{run_id}/events")
        assert_problem(r, 503, "store_unavailable")
        assert r.headers["Retry-After"] == "1"


async def test_a_first_event_slower_than_the_wait_still_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_with_manager(tmp_path, state_url="memory://", store_timeout_s=0.05) as (
        client,
        manager,
    ):
        conv = await create_conv(client)
        run_id = await live_run(manager, conv)
        runs = manager.coordinator.runs
        real_follow = runs.follow

        async def slow(run_id: str, *, after: int) -> AsyncIterator[RunEvent]:
            await asyncio.sleep(0.3)
            async for event in real_follow(run_id, after=after):
                yield event

        monkeypatch.setattr(runs, "follow", slow)

        async def finish() -> None:
            await asyncio.sleep(0.5)
            await runs.publish(run_id, "run.cancelled", {"run": {}})

        ender = asyncio.create_task(finish())
        r = await client.get(f"/conversations/{conv['id']}/runs/{run_id}/events")
        await ender
        assert r.status_code == 200, r.text
        kinds = [line[6:].strip() for line in r.text.splitlines() if line.startswith("event:")]
        assert kinds == ["run.created", "run.cancelled"]
