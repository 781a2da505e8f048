"""A run whose executing instance is dead (its liveness lease is not held) is marked
`failed` (`instance_lost`) by the instance that notices, on every coordination backend
(in-process on SQLite, SQL leases on PostgreSQL, Redis): its key is freed, `run.failed`
ends its stream, and the conversation takes a new turn. The dead instance is a record
naming an executor that holds no lease, as a SIGKILLed process leaves it (the e2e test
kills a real one)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from app.coordination.base import IdempotencyRecord, RunRecord
from app.domain import Run, RunStatus, new_id, utcnow
from app.manager.manager import ConversationManager
from app.settings import Settings
from tests.api.backends import BACKENDS, state_url_for
from tests.api.helpers import create_conv
from tests.api.sse_parse import parse_sse
from tests.conftest import app_and_manager


async def _ghost_run(manager: ConversationManager, conv: dict[str, str], key: str) -> str:
    """A running run of an instance that no longer exists, holding the key `key`."""
    run_id = new_id()
    scope = f"run:{conv['id']}"
    claimed = await manager.coordinator.idempotency.reserve(
        scope, key, IdempotencyRecord(fingerprint="ghost", ref=run_id), ttl_s=600
    )
    assert claimed is None
    run = Run(id=run_id, conversation_id=conv["id"], status=RunStatus.running, created_at=utcnow())
    record = RunRecord(
        run=run,
        lineage_id=conv["lineage_id"],
        first_message_id=new_id(),
        idempotency=(scope, key),
        executor="ghost-instance",
    )
    await manager.coordinator.runs.create(record)
    await manager.coordinator.runs.publish(
        run_id, "run.created", {"run": run.model_dump(mode="json")}
    )
    return run_id


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_dead_instances_run_is_lost(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(settings_factory(state_url=url, run_recheck_s=0.2)) as (client, manager),
    ):
        conv = await create_conv(client)
        run_id = await _ghost_run(manager, conv, "ghost-key")
        run_url = f"/conversations/{conv['id']}/runs/{run_id}"
        # a follower that started before anyone noticed ends too
        follower = asyncio.create_task(client.get(f"{run_url}/events"))
        run = (await client.get(run_url)).json()
        assert run["status"] == "failed" and run["error"]["code"] == "instance_lost", run
        async with asyncio.timeout(10):
            events = parse_sse((await follower).text)
        assert events[-1].event == "run.failed"
        assert events[-1].data["error"]["code"] == "instance_lost"
        # the end is recorded for everyone: the record and one terminal event in the log
        record = await manager.coordinator.runs.get(run_id)
        assert record is not None and record.run.status == RunStatus.failed
        logged = [e async for e in manager.coordinator.runs.follow(run_id, after=0)]
        assert [e.type for e in logged] == ["run.created", "run.failed"]
        # the key is free (a different body would be 422 idempotency_key_reused otherwise)
        r = await client.post(
            f"/conversations/{conv['id']}/messages",
            json={"content": "after"},
            headers={"Idempotency-Key": "ghost-key"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["run_id"] != run_id


async def test_a_live_instances_run_is_not_lost(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with app_and_manager(settings_factory()) as (client, manager):
        conv = await create_conv(client)
        run_id = await _ghost_run(manager, conv, "k")
        record = await manager.coordinator.runs.get(run_id)
        assert record is not None
        alive = record.model_copy(update={"executor": manager.liveness.instance_id})
        await manager.coordinator.runs.save(alive)
        run = (await client.get(f"/conversations/{conv['id']}/runs/{run_id}")).json()
        assert run["status"] == "running"


async def test_an_instance_without_its_lease_does_not_commit(
    tmp_path: Path, settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut off from the backend for longer than the lease, an instance may be declared
    dead by the others while it still runs: it must not commit then."""
    async with app_and_manager(settings_factory()) as (client, manager):
        assert manager.liveness.held
        conv = await create_conv(client)
        monkeypatch.setattr(type(manager.liveness), "held", property(lambda _: False))
        url = f"/conversations/{conv['id']}/messages"
        r = await client.post(url, json={"content": "hi"})
        assert r.status_code == 503 and r.json()["code"] == "turn_lock_lost", r.text
        assert (await client.get(url)).json()["data"] == []


async def test_an_instance_without_its_lease_is_not_ready(
    tmp_path: Path, settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It refuses every turn (above), so a load balancer must not send it any: after a
    partition it answered ready for ~10 s while every turn was 503 turn_lock_lost."""
    async with app_and_manager(settings_factory()) as (client, manager):
        assert (await client.get("/readyz")).status_code == 200
        monkeypatch.setattr(type(manager.liveness), "held", property(lambda _: False))
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["code"] == "not_ready", r.text


@pytest.mark.redis
async def test_two_instances_noticing_at_once_write_one_end(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with state_url_for("redis", tmp_path) as url:
        settings = settings_factory(state_url=url)
        async with (
            app_and_manager(settings) as (a, manager),
            app_and_manager(settings) as (b, _),
        ):
            conv = await create_conv(a)
            run_id = await _ghost_run(manager, conv, "race")
            run_url = f"/conversations/{conv['id']}/runs/{run_id}"
            seen = await asyncio.gather(*(c.get(run_url) for c in (a, b, a, b, a, b)))
            assert {r.json()["error"]["code"] for r in seen} == {"instance_lost"}
            logged = [e async for e in manager.coordinator.runs.follow(run_id, after=0)]
            assert [e.type for e in logged] == ["run.created", "run.failed"]
