"""Conversation TTL over HTTP on every backend: sliding on writes and on reads of the
conversation or its messages, not on listing; an expired conversation is gone from get
and list at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from tests.api.backends import BACKENDS, state_url_for
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import running_app

TTL = 2


@pytest.fixture(params=BACKENDS)
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        state_url_for(request.param, tmp_path) as url,
        running_app(settings_factory(state_url=url)) as c,
    ):
        yield c


async def _until(t0: float, at: float) -> None:
    await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))


async def _listed(client: httpx.AsyncClient, conv_id: str) -> bool:
    data = (await client.get("/conversations", params={"user_id": "ttl"})).json()["data"]
    return conv_id in [c["id"] for c in data]


async def test_sliding_ttl(client: httpx.AsyncClient) -> None:
    t0 = time.monotonic()
    conv = await create_conv(client, user_id="ttl", ttl_seconds=TTL)
    cid = conv["id"]
    assert conv["ttl_seconds"] == TTL and conv["expires_at"] is not None

    await _until(t0, 1.2)  # a read slides the expiry to ~3.2
    got = (await client.get(f"/conversations/{cid}")).json()
    assert got["expires_at"] > conv["expires_at"]

    await _until(t0, 2.4)  # past the original expiry: still alive thanks to the read
    assert await _listed(client, cid)
    await send(client, cid, "a write slides it too")  # to ~4.4

    await _until(t0, 3.6)  # reading messages slides (to ~5.6); listing did not
    assert (await client.get(f"/conversations/{cid}/messages")).status_code == 200

    await _until(t0, 5.0)  # listing only: no slide
    assert await _listed(client, cid)

    await _until(t0, 6.3)  # expired: gone from get, list and messages at once
    assert_problem(await client.get(f"/conversations/{cid}"), 404, "conversation_not_found")
    assert not await _listed(client, cid)
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
