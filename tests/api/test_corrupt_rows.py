"""A stored conversation that cannot be read never takes listing down: it is logged with
its id and skipped, on SQLite, PostgreSQL and Redis. The rows are corrupted on purpose,
behind the service's back, the way a bad migration or a hand edit would."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from tests.api.backends import BACKENDS, state_url_for
from tests.api.helpers import create_conv
from tests.conftest import make_settings, running_app


async def corrupt(backend: str, url: str, conv: dict[str, Any], how: str) -> None:
    conversation_id = conv["id"]
    if backend == "redis":
        prefix = parse_qs(urlsplit(url).query)["prefix"][0]
        client = Redis.from_url(url.split("?")[0])
        try:
            key = f"{prefix}{{{conv['lineage_id']}}}:c:{conversation_id}"
            assert await client.exists(key)
            await client.hset(key, "doc", '{"not": "a conversation"' if how == "json" else "{}")
        finally:
            await client.aclose()
        return
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            if how == "surrogate":  # what SQLite used to accept: valid JSON, unencodable text
                stmt = "UPDATE conversations SET meta = :v WHERE id = :id"
                params = {"v": '{"k": "a\\ud83d"}', "id": conversation_id}
            else:  # a document missing required fields
                stmt = "UPDATE conversations SET data = :v WHERE id = :id"
                params = {"v": "{}", "id": conversation_id}
            if backend == "postgres":
                stmt = stmt.replace(":v", "CAST(:v AS jsonb)")
            result = await conn.execute(sa.text(stmt), params)
            assert result.rowcount == 1
    finally:
        await engine.dispose()


CASES = {
    "sqlite": ["surrogate", "missing"],
    "postgres": ["missing"],  # jsonb cannot even hold the lone surrogate
    "redis": ["json", "missing"],
}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_listing_skips_a_row_written_corrupt(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with state_url_for(backend, tmp_path) as url:
        settings = make_settings(tmp_path, state_url=url)
        async with running_app(settings) as client:
            for i in range(3):
                await create_conv(client, conversation_id=f"good-{i}", user_id="u")
            bad = [
                (await create_conv(client, conversation_id=f"bad-{how}", user_id="u"), how)
                for how in CASES[backend]
            ]
        for conv, how in bad:
            await corrupt(backend, url, conv, how)
        # A fresh instance (nothing cached) and pages of one: every page and cursor works.
        async with running_app(settings) as client:
            caplog.set_level(logging.ERROR, logger="parley.stores")
            r = await client.get("/conversations")
            assert r.status_code == 200, r.text
            assert sorted(c["id"] for c in r.json()["data"]) == ["good-0", "good-1", "good-2"]
            seen: list[str] = []
            cursor = None
            for _ in range(10):
                params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
                page = await client.get("/conversations", params=params)
                assert page.status_code == 200, page.text
                seen += [c["id"] for c in page.json()["data"]]
                cursor = page.json()["next_cursor"]
                if cursor is None:
                    break
            assert sorted(seen) == ["good-0", "good-1", "good-2"]
            r = await client.get("/conversations", params={"user_id": "u"})
            assert r.status_code == 200 and len(r.json()["data"]) == 3
        logged = " ".join(r.getMessage() for r in caplog.records)
        for how in CASES[backend]:
            assert f"'bad-{how}'" in logged
