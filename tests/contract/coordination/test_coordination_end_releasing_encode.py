"""Review R13 (ddcea39): `RedisRunLog.save_and_publish_releasing` takes the lease's
release (`take_release`: the lease counts as released, its renewal stops) and only then
builds the script's arguments (`_event_args` -> `json_bytes(data)`,
`record.model_dump_json()`), outside the `try` whose `finally` calls `release.done(...)`.
Anything raised there (an unencodable value, R10/R12's kind) leaves the lease's
bookkeeping undone for good: the local gate of the conversation is never released and
`_held` never decremented, so every later turn on that conversation on this instance
waits its whole `turn_lock_timeout_s` and fails busy (the Redis key itself expires), and
`stamp()` stays None. Building the arguments before `take_release` (or inside the try)
closes it.

Failed at ddcea39 (ConversationBusy after waiting 1 s for a lock nobody holds)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio

from app.coordination.redis import RedisCoordinator, redis_coordinator
from app.domain import RunStatus
from tests.contract.coordination.conftest import fresh_redis
from tests.contract.coordination.test_coordination_runs import new_record


@pytest_asyncio.fixture
async def coordinator() -> AsyncIterator[RedisCoordinator]:
    async with AsyncExitStack() as stack:
        coord = redis_coordinator(await fresh_redis(stack), event_retention_s=60)
        stack.push_async_callback(coord.close)
        yield coord


@pytest.mark.redis
async def test_an_end_that_fails_before_its_script_still_frees_the_local_gate(
    coordinator: RedisCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    locks, runs = coordinator.locks, coordinator.runs
    record = new_record("run-1")
    await runs.create(record)
    lease = await locks.acquire("conv-1", "run-1", wait_s=1)  # queued: holds the gate
    ended = record.model_copy(
        update={"run": record.run.model_copy(update={"status": RunStatus.completed})}
    )

    def unencodable(data: Any) -> bytes:
        raise ValueError("cannot encode")

    monkeypatch.setattr("app.coordination.redis_runs.json_bytes", unencodable)
    with pytest.raises(ValueError):
        await runs.save_and_publish_releasing(lease, ended, "run.completed", {})
    monkeypatch.undo()
    await lease.release()  # what the executor's finally does: a no-op once taken
    # even once the Redis key is gone (deleted here as if it had expired; a correct
    # failure path deletes it itself, compare-and-delete), the local gate is still held
    client: Any = coordinator._clients.command
    await client.delete(f"{coordinator._clients.prefix}lock:{{conv-1}}")
    again = await locks.acquire("conv-1", "run-2", wait_s=1)  # busy after 1 s on main
    await again.release()
