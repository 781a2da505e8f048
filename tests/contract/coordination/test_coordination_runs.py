"""RunLog contract: records, ordered events, replay + live follow, expiry, cancellation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from app.coordination.base import EventsExpired, RunEvent, RunLog, RunRecord, TurnResult
from app.domain import Run, RunStatus
from tests.contract.coordination.conftest import RunsEnv


def new_record(run_id: str) -> RunRecord:
    run = Run(id=run_id, conversation_id="conv-1", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    return RunRecord(run=run, lineage_id="lin-1")


async def started(runs: RunLog, run_id: str = "run-1") -> str:
    await runs.create(new_record(run_id))
    return run_id


async def collect(runs: RunLog, run_id: str, after: int = 0) -> list[RunEvent]:
    return [e async for e in runs.follow(run_id, after=after)]


async def publish_run(runs: RunLog, run_id: str, n: int) -> None:
    """n events, the last one terminal."""
    for i in range(1, n):
        await runs.publish(run_id, "message.delta", {"i": i, "text": f"é{i}"})
    await runs.publish(run_id, "run.completed", {"i": n})


async def test_records_are_created_saved_and_read(runs_env: RunsEnv) -> None:
    runs = await runs_env.new()
    assert await runs.get("run-1") is None
    record = new_record("run-1")
    await runs.create(record)
    assert await runs.get("run-1") == record
    done = record.model_copy(
        update={
            "run": record.run.model_copy(update={"status": RunStatus.completed}),
            "result": TurnResult(finish_reason="stop"),
        }
    )
    await runs.save(done)
    assert await runs.get("run-1") == done


async def test_a_run_is_created_and_ended_with_its_events(runs_env: RunsEnv) -> None:
    runs, other = await runs_env.new(), await runs_env.new()
    record = new_record("run-1")
    first = await runs.create_and_publish(record, "run.created", {"n": 1})
    assert (first.seq, first.type) == (1, "run.created")
    assert await other.get("run-1") == record
    await runs.publish("run-1", "message.delta", {"n": 2})
    done = record.model_copy(
        update={"run": record.run.model_copy(update={"status": RunStatus.completed})}
    )
    last = await runs.save_and_publish(done, "run.completed", {"n": 3})
    assert (last.seq, last.type) == (3, "run.completed")
    assert await other.get("run-1") == done
    events = await collect(other, "run-1")
    assert [(e.seq, e.type, e.data) for e in events] == [
        (1, "run.created", {"n": 1}),
        (2, "message.delta", {"n": 2}),
        (3, "run.completed", {"n": 3}),
    ]


async def test_events_are_numbered_and_replayed_after_a_seq(runs_env: RunsEnv) -> None:
    runs = await runs_env.new()
    run_id = await started(runs)
    seqs = [(await runs.publish(run_id, "message.delta", {"i": i})).seq for i in range(1, 5)]
    assert seqs == [1, 2, 3, 4]
    terminal = await runs.publish(run_id, "run.completed", {"i": 5, "nested": {"a": [1, None]}})
    assert (terminal.seq, terminal.type) == (5, "run.completed")
    events = await collect(runs, run_id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[-1].data == {"i": 5, "nested": {"a": [1, None]}}
    assert [e.seq for e in await collect(runs, run_id, after=2)] == [3, 4, 5]
    assert await collect(runs, run_id, after=5) == []  # nothing after the terminal event


async def test_live_follow_with_a_concurrent_publisher(runs_env: RunsEnv) -> None:
    runs = await runs_env.new()
    run_id = await started(runs)
    follower = asyncio.create_task(collect(runs, run_id))
    await asyncio.sleep(0.05)  # following before the first event

    async def publisher() -> None:
        for i in range(1, 30):
            await runs.publish(run_id, "message.delta", {"i": i})
            if i % 5 == 0:
                await asyncio.sleep(0.01)
        await runs.publish(run_id, "run.completed", {})

    await publisher()
    events = await asyncio.wait_for(follower, timeout=5)
    assert [e.seq for e in events] == list(range(1, 31))
    assert [e.data.get("i") for e in events[:-1]] == list(range(1, 30))


async def test_several_followers_at_once(runs_env: RunsEnv) -> None:
    runs = await runs_env.new()
    run_id = await started(runs)
    await runs.publish(run_id, "run.created", {})
    followers = [asyncio.create_task(collect(runs, run_id, after=i % 2)) for i in range(8)]
    await asyncio.sleep(0.05)
    for i in range(2, 20):
        await runs.publish(run_id, "message.delta", {"i": i})
    await runs.publish(run_id, "run.failed", {})
    results = await asyncio.wait_for(asyncio.gather(*followers), timeout=5)
    for i, events in enumerate(results):
        assert [e.seq for e in events] == list(range(1 + i % 2, 21))
        assert events[-1].type == "run.failed"


async def test_follow_of_an_unknown_run_reports_expired(runs_env: RunsEnv) -> None:
    runs = await runs_env.new()
    with pytest.raises(EventsExpired) as expired:
        await collect(runs, "no-such-run")
    assert expired.value.last_seq == 0


async def test_trimmed_events_report_expired_before_anything(runs_env: RunsEnv) -> None:
    runs = await runs_env.new(max_events=5)
    run_id = await started(runs)
    for i in range(1, 301):  # Redis trims approximately (whole stream nodes)
        await runs.publish(run_id, "message.delta", {"i": i})
    seen: list[RunEvent] = []
    with pytest.raises(EventsExpired) as expired:
        async for event in runs.follow(run_id, after=0):
            seen.append(event)
    assert seen == []
    assert expired.value.last_seq == 300
    await runs.publish(run_id, "run.completed", {})
    assert [e.seq for e in await collect(runs, run_id, after=299)] == [300, 301]


async def test_events_expire_after_the_retention(runs_env: RunsEnv) -> None:
    # 1 s, not less: the first collect must land within the retention on a loaded machine
    runs = await runs_env.new(retention_s=1.0)
    run_id = await started(runs)
    await publish_run(runs, run_id, 3)
    assert len(await collect(runs, run_id)) == 3
    await asyncio.sleep(1.3)
    await started(runs, "run-2")  # the memory log expires old runs as new ones come in
    with pytest.raises(EventsExpired):
        await collect(runs, run_id)
    with pytest.raises(EventsExpired) as expired:
        await collect(runs, run_id, after=3)
    assert expired.value.last_seq == 3
    record = await runs.get(run_id)  # the record outlives its events (run.snapshot)
    assert record is not None and record.run.id == run_id


async def test_another_instance_follows_what_one_publishes(runs_env: RunsEnv) -> None:
    a, b = await runs_env.new(), await runs_env.new()
    run_id = await started(a)
    await a.publish(run_id, "run.created", {})
    follower = asyncio.create_task(collect(b, run_id))
    await asyncio.sleep(0.05)
    await publish_run(a, run_id, 4)
    events = await asyncio.wait_for(follower, timeout=5)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert await b.get(run_id) == new_record(run_id)


async def test_cancel_requests_reach_another_instance(runs_env: RunsEnv) -> None:
    a, b = await runs_env.new(), await runs_env.new()
    received: asyncio.Queue[str] = asyncio.Queue()

    async def listen() -> None:
        async for run_id in b.cancel_requests():
            await received.put(run_id)

    listener = asyncio.create_task(listen())
    try:
        # Pub/Sub only reaches subscribed listeners: ask until the listener is in place.
        got = None
        for _ in range(100):
            await a.request_cancel("run-9")
            try:
                got = await asyncio.wait_for(received.get(), timeout=0.05)
                break
            except TimeoutError:
                continue
        assert got == "run-9"
        await a.request_cancel("run-10")
        while got == "run-9":
            got = await asyncio.wait_for(received.get(), timeout=2)
        assert got == "run-10"
    finally:
        listener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listener
