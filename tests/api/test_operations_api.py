"""Operations endpoints: readiness checks what it claims; Prometheus series from
prometheus-client (monotonic counters, histograms with buckets)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.coordination.factory import SqlCoordinator
from app.errors import StoreUnavailable
from app.settings import Settings
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import REPO, app_and_manager, running_app
from tests.e2e.server import free_port


async def test_readyz_needs_a_loaded_pack(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    empty = tmp_path / "no-packs"
    empty.mkdir()
    async with running_app(settings_factory(packs_dir=empty)) as client:
        assert_problem(await client.get("/readyz"), 503, "not_ready")
        doc = json.loads((REPO / "examples" / "hello-world.pack.json").read_text())
        assert (await client.post("/packs", json=doc)).status_code == 201
        r = await client.get("/readyz")
        assert r.status_code == 200 and r.json()["packs"] == 1


async def test_sql_lease_coordination_ping_is_a_round_trip() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    coordinator = SqlCoordinator(engine, event_retention_s=60)
    try:
        with pytest.raises(StoreUnavailable):
            await coordinator.ping()
    finally:
        await coordinator.close()
        await engine.dispose()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_prometheus_series(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    await send(client, conv["id"], "one")
    first = _samples((await client.get("/metrics")).text)
    await send(client, conv["id"], "two")
    r = await client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    second = _samples(r.text)

    runs = ("parley_runs_finished_total", (("status", "completed"),))
    assert first[runs] == 1 and second[runs] == 2
    for name in ("parley_tokens_total", "parley_cost_usd_total", "parley_messages_committed_total"):
        for key, value in first.items():
            if key[0] == name:
                assert second[key] >= value  # counters never go down
    assert second[("parley_messages_committed_total", ())] == 4
    turn_count = ("parley_turn_duration_seconds_count", (("status", "completed"),))
    assert second[turn_count] == 2
    inf = ("parley_turn_duration_seconds_bucket", (("le", "+Inf"), ("status", "completed")))
    assert second[inf] == 2
    provider = ("parley_provider_latency_seconds_count", (("phase", "total"), ("provider", "mock")))
    assert second[provider] == 2
    # no "load_conversation": on memory a turn reuses its request's read (one per turn)
    for operation in ("build_context", "commit_turn"):
        key = ("parley_store_latency_seconds_count", (("operation", operation),))
        assert second[key] == 2, operation
    assert ("parley_runs_active", ()) in second


async def test_admission_gauges_count_the_queued_and_the_admitted(
    settings_factory: Callable[..., Settings],
) -> None:
    waiting, active = ("parley_admission_waiting", ()), ("parley_admission_active", ())
    async with app_and_manager(settings_factory(admission_concurrency=1)) as (client, manager):

        async def scrape() -> tuple[float, float]:
            samples = _samples((await client.get("/metrics")).text)
            return samples[waiting], samples[active]

        assert await scrape() == (0, 0)
        gate, holding, release = manager.admission, asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with gate.admit():
                holding.set()
                await release.wait()

        async def queue() -> None:
            async with gate.admit():
                pass

        first = asyncio.create_task(hold())
        await holding.wait()
        second = asyncio.create_task(queue())
        for _ in range(100):  # until it queues (the gate has no event for that)
            if gate.waiting:
                break
            await asyncio.sleep(0.01)
        assert await scrape() == (1, 1)
        release.set()
        await asyncio.gather(first, second)
        assert await scrape() == (0, 0)


async def test_readyz_is_bounded_when_the_coordination_backend_hangs(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coordination round trip that never answers (the SQL coordinator's ping has no
    statement timeout: a partition that began after the store's ping hung /readyz ~40 s,
    outside tester T3) is 503 `store_unavailable` within `PARLEY_STORE_TIMEOUT_S`."""
    async with app_and_manager(settings_factory(store_timeout_s=0.3)) as (client, manager):
        assert (await client.get("/readyz")).status_code == 200

        async def hangs() -> None:
            await asyncio.sleep(60)

        monkeypatch.setattr(manager.coordinator, "ping", hangs)
        started = time.monotonic()
        r = await client.get("/readyz")
        assert time.monotonic() - started < 2
        body = assert_problem(r, 503, "store_unavailable")
        assert "0.3 s" in body["detail"]
