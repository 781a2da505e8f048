"""The start-up warm-up (app.manager.warm_up): /readyz is not ready while it runs, the
lifespan runs it before the app serves, and it is bounded by its timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import app.manager.manager as manager_module
from app.settings import Settings
from tests.api.helpers import assert_problem
from tests.conftest import app_and_manager


async def test_readyz_is_not_ready_while_the_warm_up_runs(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_and_manager(settings_factory()) as (client, manager):
        assert (await client.get("/readyz")).status_code == 200  # the lifespan warmed up
        started, release = asyncio.Event(), asyncio.Event()

        async def gated(**_: Any) -> dict[str, float]:
            started.set()
            await release.wait()
            return {}

        monkeypatch.setattr(manager_module, "warm_up", gated)
        task = asyncio.create_task(manager.warm_up())
        await started.wait()
        assert_problem(await client.get("/readyz"), 503, "not_ready")
        release.set()
        await task
        assert (await client.get("/readyz")).status_code == 200


async def test_the_lifespan_warms_the_store_and_run_log_before_serving(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    took: list[dict[str, float]] = []
    real = manager_module.warm_up

    async def recording(**kw: Any) -> dict[str, float]:
        took.append(await real(**kw))
        return took[-1]

    monkeypatch.setattr(manager_module, "warm_up", recording)
    async with app_and_manager(settings_factory()) as (client, _):
        assert len(took) == 1 and {"store", "coordination", "encodings"} <= set(took[0])
        assert (await client.get("/readyz")).status_code == 200


async def test_a_hanging_warm_up_step_is_given_up_within_the_timeout(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.coordination.base import RunLog
    from app.coordination.sql_runs import SqlRunLog

    hung: list[bool] = []

    async def hang(_: RunLog) -> None:
        hung.append(True)
        await asyncio.sleep(3600)

    for cls in (RunLog, SqlRunLog):
        monkeypatch.setattr(cls, "warm_up", hang)
    t = time.monotonic()
    async with app_and_manager(settings_factory(warm_up_timeout_s=0.5)) as (client, _):
        assert hung and time.monotonic() - t < 5
        assert (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize(("pool_size", "primed"), [(2, 1), (5, 4), (10, 4)])
async def test_a_postgres_warm_up_primes_the_pool_and_starts_the_run_heartbeat(
    pool_size: int, primed: int, tmp_path: Path
) -> None:
    """At most `PRIMED_CONNECTIONS`, and one fewer than the pool: the LISTEN connection
    is held already when the server warms up."""
    from app.coordination.factory import build_coordinator
    from app.stores.factory import create_store
    from tests.conftest import make_settings
    from tests.services import scratch_postgres_database

    async with scratch_postgres_database() as url:
        store = create_store(url, database_pool_size=pool_size, database_max_overflow=0)
        await store.open()
        settings = make_settings(tmp_path, state_url=url, database_pool_size=pool_size)
        coordinator = build_coordinator(settings, store)
        try:
            await asyncio.wait_for(coordinator.warm_up(), timeout=10)  # never waits on itself
            pool = store.sql_engine().pool
            assert pool.checkedin() == primed  # type: ignore[attr-defined]
            t = time.perf_counter()
            await coordinator.warm_up()  # the heartbeat and sweep are not paid twice
            assert time.perf_counter() - t < 1
        finally:
            await coordinator.close()
            await store.close()
