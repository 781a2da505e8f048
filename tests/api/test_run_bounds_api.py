"""In-process run bookkeeping: an idempotency key answers with its run's result as long as
the key lives, whatever the bound on other run records; a cancellation asked for from a
stream that went away is not fire-and-forget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from app.coordination.base import RunRecord
from app.domain import Run, utcnow
from app.errors import StoreUnavailable
from app.main import create_app
from app.manager.manager import ConversationManager
from app.settings import Settings
from tests.api.helpers import create_conv
from tests.conftest import running_app


async def test_a_key_keeps_its_result_past_the_record_bound(
    settings_factory: Callable[..., Settings],
) -> None:
    # memory://: the in-process run log, which PARLEY_RUN_RECORDS_MAX bounds (SQL stores
    # keep run records in their database)
    async with running_app(settings_factory(state_url="memory://", run_records_max=3)) as client:
        conv = await create_conv(client)
        url = f"/conversations/{conv['id']}/messages"
        keyed = await client.post(url, json={"content": "keyed"}, headers={"Idempotency-Key": "k"})
        assert keyed.status_code == 200, keyed.text
        unkeyed = []
        for i in range(8):  # well past the bound of 3 un-keyed records
            r = await client.post(url, json={"content": f"turn {i}"})
            assert r.status_code == 200, r.text
            unkeyed.append(r.json()["run_id"])
        # the bound holds for records without a key...
        old = await client.get(f"/conversations/{conv['id']}/runs/{unkeyed[0]}")
        assert old.status_code == 404
        assert (await client.get(f"/conversations/{conv['id']}/runs/{unkeyed[-1]}")).is_success
        # ...while the key still answers with its result, at once, without running again
        async with asyncio.timeout(3):
            again = await client.post(
                url, json={"content": "keyed"}, headers={"Idempotency-Key": "k"}
            )
        assert again.status_code == 200, again.text
        assert again.json()["run_id"] == keyed.json()["run_id"]
        assert again.json()["messages"] == keyed.json()["messages"]
        listed = (await client.get(url, params={"limit": 100})).json()["data"]
        assert len(listed) == 2 * 9


@asynccontextmanager
async def manager_of(settings: Settings) -> AsyncIterator[ConversationManager]:
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        yield state["manager"]


async def test_a_failed_cancel_request_is_logged(
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with manager_of(settings_factory()) as manager:
        runs = manager.coordinator.runs
        run = Run(id="elsewhere", conversation_id="c", created_at=utcnow())
        await runs.create(RunRecord(run=run, lineage_id="c"))  # runs on "another instance"
        await runs.publish("elsewhere", "run.created", {"run": run.model_dump(mode="json")})

        async def refuse(run_id: str) -> None:
            raise StoreUnavailable("injected: cannot ask for the cancellation")

        monkeypatch.setattr(runs, "request_cancel", refuse)
        events = manager.runs.events("elsewhere", after=0, cancel_on_disconnect=True)
        assert (await anext(events)).type == "run.created"
        with caplog.at_level(logging.WARNING, logger="parley.runs"):
            await events.aclose()  # the reader went away: cancel, in the background
            for _ in range(50):
                if any("cancel-elsewhere" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.01)
        messages = [r.getMessage() for r in caplog.records]
        assert any("cancel-elsewhere" in m and "injected" in m for m in messages), messages
