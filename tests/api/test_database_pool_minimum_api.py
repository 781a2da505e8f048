"""PostgreSQL's pool at its smallest (`PARLEY_DATABASE_POOL_SIZE` +
`PARLEY_DATABASE_MAX_OVERFLOW`). Coordination in the database holds one connection for
good (LISTEN), taken before the warm-up; the warm-up then primed `min(4, pool size)`
connections at once, waiting for all of them together: with 4 or fewer it waited for
one that could never come, gave up after its timeout and left the ones it held held, so
the server never served a request (readyz 503, every call 503 `store_unavailable`).
It now primes at most what is free beside the LISTEN connection, and a pool below the
real minimum (2: the LISTEN one and one for everything else) refuses to start with a
message naming both settings."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.coordination.factory import MIN_CONNECTIONS
from tests.api.backends import state_url_for
from tests.api.helpers import create_conv, send
from tests.conftest import make_settings, running_app
from tests.services import scratch_postgres_database


async def a_turn_completes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/readyz")).status_code == 200
    conv = await create_conv(client)
    turn = await send(client, conv["id"], "hello")
    assert turn["status"] == "completed" and turn["messages"][-1]["role"] == "assistant", turn
    r = await client.post(
        f"/conversations/{conv['id']}/messages", json={"content": "again", "stream": True}
    )
    assert r.status_code == 200 and "run.completed" in r.text, r.text


async def test_a_pool_below_the_minimum_refuses_to_start(tmp_path: Path) -> None:
    assert MIN_CONNECTIONS == 2
    async with scratch_postgres_database() as url:
        settings = make_settings(
            tmp_path, state_url=url, database_pool_size=1, database_max_overflow=0
        )
        with pytest.raises(ValueError) as refused:
            async with running_app(settings):
                pass
    message = str(refused.value)
    assert "\n" not in message
    assert "PARLEY_DATABASE_POOL_SIZE + PARLEY_DATABASE_MAX_OVERFLOW is 1" in message
    assert "at least 2 connections" in message


@pytest.mark.parametrize(("size", "overflow"), [(2, 0), (1, 1), (3, 0), (4, 0)])
async def test_the_smallest_pools_serve_turns(size: int, overflow: int, tmp_path: Path) -> None:
    async with scratch_postgres_database() as url:
        settings = make_settings(
            tmp_path,
            state_url=url,
            database_pool_size=size,
            database_max_overflow=overflow,
            store_timeout_s=3,
        )
        async with running_app(settings) as client:
            await a_turn_completes(client)


async def test_one_connection_serves_when_coordination_is_in_redis(tmp_path: Path) -> None:
    async with (
        scratch_postgres_database() as url,
        state_url_for("redis", tmp_path) as coordination_url,
    ):
        settings = make_settings(
            tmp_path,
            state_url=url,
            coordination_url=coordination_url,
            database_pool_size=1,
            database_max_overflow=0,
        )
        async with running_app(settings) as client:
            await a_turn_completes(client)
