"""Deleting a conversation, or erasing a user, erases its runs' records and events from
the coordination backend, where they held the messages' text (outside tester T4): checked
at the storage level (SQL rows, Redis keys, the in-process log), for ended runs and for a
run still streaming when the deletion comes (`app.manager.run_erasure`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

import app.manager.run_erasure
from app.coordination.base import EventsExpired
from app.manager.manager import ConversationManager
from app.manager.run_erasure import RunErasure
from app.settings import Settings
from app.stores.sql_tables import run_events, run_records
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import create_conv
from tests.api.sse_parse import parse_sse
from tests.conftest import app_and_manager
from tests.services import redis_url


async def stored(manager: ConversationManager, url: str, run_id: str) -> list[str]:
    """Where the run is still kept: the run log's answer, and its backend's rows/keys."""
    found = []
    runs = manager.coordinator.runs
    if await runs.get(run_id) is not None:
        found.append("record")
    try:
        async for _ in runs.follow(run_id, after=0):
            found.append("events")
            break
    except EventsExpired as expired:
        if expired.last_seq:
            found.append("event counter")
    if manager.store.capabilities.sql_coordination:
        async with manager.store.sql_engine().connect() as conn:
            for table in (run_records, run_events):
                query = sa.select(sa.func.count()).where(table.c.run_id == run_id)
                if await conn.scalar(query):
                    found.append(f"{table.name} rows")
    elif url.startswith("redis"):
        from redis.asyncio import Redis

        prefix = parse_qs(urlsplit(url).query)["prefix"][0]
        client = Redis.from_url(redis_url())
        try:
            found += [k.decode() async for k in client.scan_iter(match=f"{prefix}*{run_id}*")]
        finally:
            await client.aclose()
    return found


async def turn(client: httpx.AsyncClient, conv_id: str, text: str, **body: Any) -> str:
    r = await client.post(f"/conversations/{conv_id}/messages", json={"content": text, **body})
    assert r.status_code == 200, r.text
    if not body.get("stream"):
        run_id: str = r.json()["run_id"]
        return run_id
    events = parse_sse(r.text)
    assert events[-1].event == "run.completed", [e.event for e in events]
    run_id = events[0].data["run"]["id"]
    return run_id


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_deleting_a_conversation_erases_its_runs(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with state_url_for(backend, tmp_path) as url:
        settings = settings_factory(state_url=url)
        async with app_and_manager(settings) as (client, manager):
            conv, other = await create_conv(client), await create_conv(client)
            mine = [
                await turn(client, conv["id"], "the secret"),
                await turn(client, conv["id"], "streamed secret", stream=True),
            ]
            theirs = await turn(client, other["id"], "not deleted")
            for run_id in [*mine, theirs]:
                assert "record" in await stored(manager, url, run_id)

            r = await client.delete(f"/conversations/{conv['id']}")
            assert r.status_code == 204, r.text

            for run_id in mine:
                assert await stored(manager, url, run_id) == []
            assert "record" in await stored(manager, url, theirs)


@pytest.mark.parametrize("by", ["follower", "executor"])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_run_streaming_when_its_conversation_is_deleted_is_erased_when_it_ends(
    backend: str,
    by: str,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each of the two ways alone erases the run: `follower`, the deletion's background
    follower (the executor's own check disabled); `executor`, the run's own end (the
    follower gives up at once, as a restart of the deleting instance would)."""
    if by == "executor":
        monkeypatch.setattr(app.manager.run_erasure, "LIVE_WAIT_S", 0.0)
    else:
        monkeypatch.setattr(RunErasure, "erase_if_deleted", lambda *_: None)
    async with state_url_for(backend, tmp_path) as url:
        settings = settings_factory(state_url=url, mock_delay_ms=30)
        async with app_and_manager(settings) as (client, manager):
            conv = await create_conv(client)
            cid = conv["id"]
            body = {"content": "a long secret " * 20}  # ~2 s of deltas
            sending = asyncio.create_task(client.post(f"/conversations/{cid}/messages", json=body))
            async with asyncio.timeout(10):
                # (the lock's holder is the run; no event says it took the lock)
                while (run_id := await manager.coordinator.locks.holder(cid)) is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # deltas are flowing
            assert not sending.done()
            assert "record" in await stored(manager, url, run_id)

            r = await client.delete(f"/conversations/{cid}")
            assert r.status_code == 204, r.text

            assert not sending.done()  # the deletion answered at once, as before
            answer = await asyncio.wait_for(sending, timeout=10)
            assert answer.status_code == 404 and answer.json()["code"] == "conversation_not_found"
            async with asyncio.timeout(5):
                while await stored(manager, url, run_id):  # noqa: ASYNC110 - erased after its end
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            assert await stored(manager, url, run_id) == []  # nothing brought it back


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_erasing_a_user_erases_the_runs_of_their_conversations(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with state_url_for(backend, tmp_path) as url:
        settings = settings_factory(state_url=url)
        async with app_and_manager(settings) as (client, manager):
            hers = [await create_conv(client, user_id="erin") for _ in range(2)]
            his = await create_conv(client, user_id="frank")
            erased = [await turn(client, c["id"], "erin's secret") for c in hers]
            kept = await turn(client, his["id"], "frank's")

            r = await client.delete("/users/erin/conversations")
            assert r.status_code == 200 and r.json() == {"deleted": 2}, r.text

            for run_id in erased:
                assert await stored(manager, url, run_id) == []
            assert "record" in await stored(manager, url, kept)
