"""Runs always end: recording the end of a run fails on purpose after its commit.

The terminal event (and the terminal record) cannot be written to the coordination
backend, as in a Redis blip right after the commit. Whatever the backend (in-process
coordination on SQLite, SQL leases on PostgreSQL, Redis): the run reads `completed`, a
follower of its events ends with `run.completed`, an idempotent retry returns the
committed result, nothing is committed twice, and once the backend heals the executor's
background retry records the end for real. On Redis a second instance, which cannot
see the first one's memory, derives the outcome from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import app.lifespan
from app.coordination.base import TERMINAL_EVENTS, Coordinator, RunEvent, RunLog, RunRecord
from app.errors import StoreUnavailable
from app.settings import Settings
from app.stores.base import StateStore
from tests.api.backends import BACKENDS, state_url_for
from tests.api.helpers import create_conv
from tests.api.sse_parse import parse_sse
from tests.conftest import running_app


class FlakyRunLog(RunLog):
    """Delegates to `inner`; while `broken`, terminal events fail to publish, and with
    `records` terminal records fail to save too."""

    def __init__(self, inner: RunLog) -> None:
        self.inner = inner
        self.broken = True
        self.records = True
        self.refused = 0

    def _refuse(self) -> None:
        self.refused += 1
        raise StoreUnavailable("injected: the terminal write failed")

    async def create(self, record: RunRecord) -> None:
        await self.inner.create(record)

    async def save(self, record: RunRecord) -> None:
        if self.broken and self.records and record.run.status.terminal:
            self._refuse()
        await self.inner.save(record)

    async def get(self, run_id: str) -> RunRecord | None:
        return await self.inner.get(run_id)

    async def publish(self, run_id: str, type_: str, data: dict[str, Any]) -> RunEvent:
        if self.broken and type_ in TERMINAL_EVENTS:
            self._refuse()
        return await self.inner.publish(run_id, type_, data)

    def follow(self, run_id: str, *, after: int) -> AsyncIterator[RunEvent]:
        return self.inner.follow(run_id, after=after)

    async def erase(
        self, conversation_id: str, lineage_id: str | None, *, created_at: datetime | None = None
    ) -> list[str]:
        return await self.inner.erase(conversation_id, lineage_id, created_at=created_at)

    async def request_cancel(self, run_id: str) -> None:
        await self.inner.request_cancel(run_id)

    def cancel_requests(self) -> AsyncIterator[str]:
        return self.inner.cancel_requests()


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> list[FlakyRunLog]:
    """The first app started gets a `FlakyRunLog`; later ones (other instances) do not."""
    made: list[FlakyRunLog] = []
    real = app.lifespan.build_coordinator

    def build(settings: Settings, store: StateStore) -> Coordinator:
        coordinator = real(settings, store)
        if not made:
            made.append(FlakyRunLog(coordinator.runs))
            coordinator.runs = made[0]
        return coordinator

    monkeypatch.setattr(app.lifespan, "build_coordinator", build)
    return made


def _settings(factory: Callable[..., Settings], url: str) -> Settings:
    return factory(state_url=url, run_recheck_s=0.2)


async def _events(client: httpx.AsyncClient, conv_id: str, run_id: str) -> list[str]:
    async with asyncio.timeout(10):
        r = await client.get(f"/conversations/{conv_id}/runs/{run_id}/events")
    assert r.status_code == 200, r.text
    return [e.event for e in parse_sse(r.text)]


async def _messages(client: httpx.AsyncClient, conv_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{conv_id}/messages")
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


@pytest.mark.parametrize("records", [True, False], ids=["record+event", "event"])
@pytest.mark.parametrize("backend", BACKENDS)
async def test_terminal_write_fails_after_commit(
    backend: str,
    records: bool,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    flaky: list[FlakyRunLog],
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        running_app(_settings(settings_factory, url)) as client,
    ):
        log = flaky[0]
        log.records = records
        conv = await create_conv(client)
        cid = conv["id"]
        url_msgs = f"/conversations/{cid}/messages"

        # un-keyed: the request itself gets the committed result, so nobody retries it
        r = await client.post(url_msgs, json={"content": "one"})
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["status"] == "completed" and first["reply"]["content"] == "echo: one"
        assert log.refused >= 1
        run = (await client.get(f"/conversations/{cid}/runs/{first['run_id']}")).json()
        assert run["status"] == "completed"
        assert run["usage"] == first["usage"]
        # a follower ends, with the outcome, though the log has no terminal event
        assert (await _events(client, cid, first["run_id"]))[-1] == "run.completed"

        # keyed: the retry answers with the committed result, it does not run again
        key = {"Idempotency-Key": "after-commit"}
        keyed = await client.post(url_msgs, json={"content": "two"}, headers=key)
        again = await client.post(url_msgs, json={"content": "two"}, headers=key)
        assert keyed.status_code == again.status_code == 200, (keyed.text, again.text)
        assert again.json()["run_id"] == keyed.json()["run_id"]
        assert again.json()["messages"] == keyed.json()["messages"]

        # streaming: the live stream ends with the terminal event
        async with asyncio.timeout(10):
            streamed = await client.post(url_msgs, json={"content": "three", "stream": True})
        kinds = [e.event for e in parse_sse(streamed.text)]
        assert kinds[0] == "run.created" and kinds[-1] == "run.completed", kinds

        messages = await _messages(client, cid)
        assert [m["content"] for m in messages] == [
            "one",
            "echo: one",
            "two",
            "echo: two",
            "three",
            "echo: three",
        ]

        # the backend heals: the executor's retry records the end for real
        log.broken = False
        async with asyncio.timeout(15):
            while True:
                record = await log.inner.get(first["run_id"])
                assert record is not None
                if record.run.status.terminal:
                    break
                await asyncio.sleep(0.1)
        assert record.run.status.value == "completed"
        events = [e async for e in log.inner.follow(first["run_id"], after=0)]
        assert events[-1].type == "run.completed"
        assert [e.type for e in events].count("run.completed") == 1


@pytest.mark.redis
async def test_another_instance_derives_the_outcome_from_the_store(
    tmp_path: Path, settings_factory: Callable[..., Settings], flaky: list[FlakyRunLog]
) -> None:
    async with state_url_for("redis", tmp_path) as url:
        settings = _settings(settings_factory, url)
        async with running_app(settings) as a, running_app(settings) as b:
            conv = await create_conv(a)
            cid = conv["id"]
            key = {"Idempotency-Key": "derive"}
            body = {"content": "derive me"}
            first = await a.post(f"/conversations/{cid}/messages", json=body, headers=key)
            assert first.status_code == 200, first.text
            run_id = first.json()["run_id"]
            # b knows nothing but the store and the (stale) record
            assert (await b.get(f"/conversations/{cid}/runs/{run_id}")).json()[
                "status"
            ] == "completed"
            assert (await _events(b, cid, run_id))[-1] == "run.completed"
            retry = await b.post(f"/conversations/{cid}/messages", json=body, headers=key)
            assert retry.status_code == 200, retry.text
            assert retry.json()["run_id"] == run_id
            assert retry.json()["messages"] == first.json()["messages"]
            assert len(await _messages(b, cid)) == 2
