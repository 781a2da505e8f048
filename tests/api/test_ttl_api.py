"""Conversation TTL over HTTP on every backend: sliding on writes and on reads of the
conversation or its messages, not on listing; an expired conversation is gone from get
and list at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from tests.api.backends import BACKENDS, app_on
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import running_app

TTL = 2


@pytest.fixture(params=BACKENDS)
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_on(request.param, tmp_path, settings_factory()) as c:
        yield c


def _at(expires_at: str) -> float:
    """A server `expires_at` as a time.time() value (same machine, same clock)."""
    return datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp()


async def _sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


async def _listed(client: httpx.AsyncClient, conv_id: str) -> str | None:
    """The conversation's `expires_at` as listing shows it, or None if it is not listed."""
    data = (await client.get("/conversations", params={"user_id": "ttl"})).json()["data"]
    return next((c["expires_at"] for c in data if c["id"] == conv_id), None)


async def test_sliding_ttl(client: httpx.AsyncClient) -> None:
    """Each step reads the expiry the server reports instead of assuming when a request
    ran, so a slow machine cannot make it flaky: only the final wait depends on time, and
    it waits past the last expiry the server reported."""
    conv = await create_conv(client, user_id="ttl", ttl_seconds=TTL)
    cid = conv["id"]
    assert conv["ttl_seconds"] == TTL and conv["expires_at"] is not None
    created = conv["expires_at"]

    await asyncio.sleep(1.3)  # reads slide only by at least a second (see _slide_ttl)
    read = (await client.get(f"/conversations/{cid}")).json()["expires_at"]
    assert read > created  # a read slides the expiry

    await _sleep_until(_at(created) + 0.2)  # past the original expiry
    listed = await _listed(client, cid)
    assert listed is not None, "alive thanks to the read"
    assert listed == read or time.time() > _at(read)  # (a very slow machine: the read expired)

    await send(client, cid, "a write slides it too")
    after_write = await _listed(client, cid)
    assert after_write is not None and after_write > read

    await asyncio.sleep(1.3)
    assert (await client.get(f"/conversations/{cid}/messages")).status_code == 200
    after_messages = await _listed(client, cid)
    assert after_messages is not None and after_messages > after_write  # reading messages slides

    await asyncio.sleep(0.3)
    assert await _listed(client, cid) == after_messages  # listing does not slide

    await _sleep_until(_at(after_messages) + 0.3)  # expired: gone everywhere at once
    assert_problem(await client.get(f"/conversations/{cid}"), 404, "conversation_not_found")
    assert await _listed(client, cid) is None
    r = await client.get(f"/conversations/{cid}/messages")
    assert_problem(r, 404, "conversation_not_found")
    r = await client.post(f"/conversations/{cid}/messages", json={"content": "late"})
    assert_problem(r, 404, "conversation_not_found")
    # its id is free again
    again = await create_conv(client, user_id="ttl", conversation_id=cid)
    assert again["message_count"] == 0


async def test_default_ttl_and_patch(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with running_app(settings_factory(default_ttl_s=3600)) as client:
        conv = await create_conv(client, user_id="ttl")
        assert conv["ttl_seconds"] == 3600 and conv["expires_at"]
        patched = (
            await client.patch(f"/conversations/{conv['id']}", json={"ttl_seconds": 60})
        ).json()
        assert patched["ttl_seconds"] == 60 and patched["expires_at"] < conv["expires_at"]
        forever = await create_conv(client, user_id="ttl", ttl_seconds=None)
        assert forever["ttl_seconds"] == 3600
