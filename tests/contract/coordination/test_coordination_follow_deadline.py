"""A follower of a run ends even when the terminal event never reaches the log: every
`recheck_s` of silence it re-reads the record (`app.manager.run_follow`), on every
run-log backend."""

from __future__ import annotations

import asyncio
import time

from app.coordination.base import RunEvent, RunLog, RunRecord
from app.domain import RunStatus
from app.manager.run_follow import follow_checked
from tests.contract.coordination.conftest import RunsEnv
from tests.contract.coordination.test_coordination_runs import new_record


async def _follow(runs: RunLog, run_id: str, after: int = 0) -> list[RunEvent]:
    async def settle() -> RunRecord | None:
        return await runs.get(run_id)

    async with asyncio.timeout(10):
        return [
            e async for e in follow_checked(runs, run_id, after=after, recheck_s=0.1, settle=settle)
        ]


async def test_a_terminal_record_ends_a_silent_follow(runs_env: RunsEnv) -> None:
    runs = await runs_env.new()
    record = new_record("run-deadline")
    await runs.create(record)
    await runs.publish("run-deadline", "run.created", {})
    await runs.publish("run-deadline", "message.delta", {"delta": "x"})
    follower = asyncio.create_task(_follow(runs, "run-deadline"))
    await asyncio.sleep(0.3)
    assert not follower.done()  # running: it keeps following
    done = record.run.model_copy(update={"status": RunStatus.completed})
    await runs.save(record.model_copy(update={"run": done}))  # the terminal event is lost
    started = time.monotonic()
    events = await follower
    assert time.monotonic() - started < 2
    assert [(e.seq, e.type) for e in events] == [
        (1, "run.created"),
        (2, "message.delta"),
        (3, "run.completed"),
    ]
    assert events[-1].data["run"]["status"] == "completed"
    # until the end is recorded for real, a reconnect gets the outcome again, and ends
    assert [e.type for e in await _follow(runs, "run-deadline", after=3)] == ["run.completed"]
    await runs.publish("run-deadline", "run.completed", {})  # the executor's retry landed
    assert [e.type for e in await _follow(runs, "run-deadline", after=3)] == []


async def test_live_events_still_flow_through_the_checked_follow(runs_env: RunsEnv) -> None:
    runs = await runs_env.new()
    await runs.create(new_record("run-live"))
    follower = asyncio.create_task(_follow(runs, "run-live"))
    for i in range(5):
        await runs.publish("run-live", "message.delta", {"i": i})
        await asyncio.sleep(0.15)  # longer than recheck_s: the record is re-read meanwhile
    await runs.publish("run-live", "run.completed", {})
    events = await follower
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[-1].type == "run.completed"
