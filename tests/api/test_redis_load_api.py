"""Creates under load on Redis (issue 8): every acknowledged create is listable and
erasable. Many concurrent creates, more than the Redis pool has connections, through the
HTTP API; then every conversation is found by cursor paging (no gap, no duplicate) and
erased by `DELETE /users/{u}/conversations`.

`PARLEY_LOAD_CREATES` (default 2000) sets how many; the issue's acceptance run is 10,000.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.api.backends import state_url_for
from tests.conftest import make_settings, running_app
from tests.services import redis_url

pytestmark = pytest.mark.redis

CREATES = int(os.environ.get("PARLEY_LOAD_CREATES", "2000"))
CONCURRENCY = 50


async def _page_all(client: httpx.AsyncClient, **params: Any) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": 200, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/conversations", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        ids += [c["id"] for c in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


async def _conversation_keys(url: str) -> list[str]:
    prefix = url.split("prefix=", 1)[1]
    client = Redis.from_url(redis_url(), decode_responses=True)
    try:
        return [k async for k in client.scan_iter(match=f"{prefix}*:c:*", count=1000)]
    finally:
        await client.aclose()


@pytest.mark.timeout(max(300, CREATES // 10))
async def test_concurrent_creates_are_all_listed_and_erased(tmp_path: Path) -> None:
    t0 = time.monotonic()
    user = f"load-{uuid.uuid4().hex[:8]}"
    async with (
        state_url_for("redis", tmp_path) as url,
        running_app(make_settings(tmp_path, state_url=url)) as client,
    ):
        gate = asyncio.Semaphore(CONCURRENCY)
        statuses: dict[int, int] = {}
        created: list[str] = []

        async def create(i: int) -> None:
            async with gate:
                r = await client.post(
                    "/conversations",
                    json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": user},
                )
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 201:
                created.append(r.json()["id"])

        await asyncio.gather(*(create(i) for i in range(CREATES)))
        assert statuses == {201: CREATES}, statuses
        t_created = time.monotonic()

        by_user = await _page_all(client, user_id=user)
        assert len(by_user) == len(set(by_user)) == CREATES
        assert set(by_user) == set(created)
        everything = await _page_all(client)  # the global index (this prefix only)
        assert sorted(everything) == sorted(created)

        t_listed = time.monotonic()
        r = await client.delete(f"/users/{user}/conversations")
        t_erased = time.monotonic()
        print(
            f"{CREATES} creates: {t_created - t0:.1f} s, listing twice: "
            f"{t_listed - t_created:.1f} s, erasure: {t_erased - t_listed:.1f} s"
        )
        assert r.status_code == 200, r.text
        assert r.json()["deleted"] == CREATES
        assert await _page_all(client, user_id=user) == []
        assert (await client.get(f"/conversations/{created[0]}")).status_code == 404
        assert await _conversation_keys(url) == []
