"""Erasing a deleted conversation's runs names its incarnation (outside tester T1 follow-up):
a fork deleted and made again under its id has its id and lineage, so erasing by id and
lineage alone, after the deleted fork's live run ended (the deletion's background
follower, up to 15 min later) or at that run's own end (`erase_if_deleted`), erased the
new fork's ended runs, or (the conversation "still existing") not the deleted one's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from app.coordination.base import RunLog, RunRecord
from app.coordination.memory import memory_coordinator
from app.domain import ForkedFrom, Run, RunStatus
from app.manager.run_erasure import RunErasure
from app.stores.memory import MemoryStore
from tests.contract.builders import conversation

BOB = datetime(2026, 1, 1, tzinfo=UTC)
ALICE = datetime(2026, 1, 2, tzinfo=UTC)


def _record(run_id: str, created: datetime) -> RunRecord:
    run = Run(id=run_id, conversation_id="fork", created_at=created)
    return RunRecord(run=run, lineage_id="lin", conversation_created_at=created)


async def _end(runs: RunLog, record: RunRecord) -> None:
    done = record.model_copy(
        update={"run": record.run.model_copy(update={"status": RunStatus.cancelled})}
    )
    await runs.save_and_publish(done, "run.cancelled", {"run": done.run.id})


async def _settled(erasure: RunErasure) -> None:
    for _ in range(100):
        await asyncio.sleep(0)
    await asyncio.gather(*erasure._tasks)


async def test_the_deleted_forks_follower_keeps_the_new_forks_runs() -> None:
    coordinator = memory_coordinator(event_retention_s=3600)
    runs = coordinator.runs
    erasure = RunErasure(coordinator=coordinator, store=MemoryStore(), clock=lambda: ALICE)
    bobs = _record("run-bob", BOB)
    await runs.create_and_publish(bobs, "run.created", {"run": bobs.run.id})

    await erasure.erase("fork", "lin", BOB)  # bob's fork deleted, its run still live
    alices = _record("run-alice", ALICE)  # the fork made again under its id: a turn ends
    await runs.create_and_publish(alices, "run.created", {"run": alices.run.id})
    await _end(runs, alices)
    await _end(runs, bobs)
    await _settled(erasure)

    assert await runs.get("run-bob") is None
    assert await runs.get("run-alice") is not None


async def test_a_deleted_forks_run_ending_erases_its_runs_not_the_new_forks() -> None:
    coordinator = memory_coordinator(event_retention_s=3600)
    runs = coordinator.runs
    store = MemoryStore()
    source = await store.create_conversation(conversation("src", lineage_id="lin"))
    await store.create_conversation(  # the fork made again under the deleted fork's id
        conversation(
            "fork",
            lineage_id="lin",
            created_at=ALICE,
            forked_from=ForkedFrom(conversation_id=source.id, message_id=None),
        )
    )
    erasure = RunErasure(coordinator=coordinator, store=store, clock=lambda: ALICE)
    bobs, alices = _record("run-bob", BOB), _record("run-alice", ALICE)
    for record in (bobs, alices):
        await runs.create_and_publish(record, "run.created", {"run": record.run.id})
        await _end(runs, record)

    erasure.erase_if_deleted("fork", "lin", BOB)  # bob's run's own end
    await _settled(erasure)

    assert await runs.get("run-bob") is None
    assert await runs.get("run-alice") is not None
