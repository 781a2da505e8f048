"""LocalFanout: followers on the publishing instance read memory, never the shared log;
every event still reaches the log; a failed publish sends followers back to the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.coordination.base import RunEvent, RunRecord
from app.coordination.local_fanout import LocalFanout
from app.coordination.memory import MemoryRunLog
from app.domain import Run, utcnow
from app.errors import StoreUnavailable


class CountingLog(MemoryRunLog):
    """The shared log: counts follows; publishes can be held back or made to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.follows = 0
        self.hold: dict[int, asyncio.Event] = {}  # seq -> released when set
        self.fail_after_write: set[int] = set()  # seqs whose publish lands, then raises

    async def publish(self, run_id: str, type_: str, data: dict[str, Any]) -> RunEvent:
        event = await super().publish(run_id, type_, data)
        if event.seq in self.hold:
            await self.hold[event.seq].wait()
        if event.seq in self.fail_after_write:
            raise StoreUnavailable("injected: the answer was lost")
        return event

    async def follow(self, run_id: str, *, after: int) -> AsyncIterator[RunEvent]:
        self.follows += 1
        async for event in super().follow(run_id, after=after):
            yield event


def record(run_id: str) -> RunRecord:
    return RunRecord(run=Run(id=run_id, conversation_id="c", created_at=utcnow()), lineage_id="c")


async def collect(log: LocalFanout | MemoryRunLog, run_id: str, after: int = 0) -> list[int]:
    return [e.seq async for e in log.follow(run_id, after=after)]


async def publish_run(log: LocalFanout, run_id: str, deltas: int) -> None:
    for i in range(deltas):
        await log.publish(run_id, "message.delta", {"delta": str(i)})
    await log.publish(run_id, "run.completed", {})


async def test_a_run_created_here_is_followed_in_memory_and_written_to_the_log() -> None:
    inner = CountingLog()
    log = LocalFanout(inner)
    await log.create(record("r"))
    followers = [asyncio.create_task(collect(log, "r")) for _ in range(3)]
    await asyncio.sleep(0)
    await publish_run(log, "r", 4)
    assert [await f for f in followers] == [[1, 2, 3, 4, 5]] * 3
    assert inner.follows == 0
    assert await collect(inner, "r") == [1, 2, 3, 4, 5]  # everything is in the shared log
    assert log.channels() == 0  # closed by the terminal event
    assert await collect(log, "r", after=2) == [3, 4, 5]  # a later reader: from the log


async def test_a_run_created_elsewhere_is_followed_on_the_log() -> None:
    inner = CountingLog()
    here, elsewhere = LocalFanout(inner), LocalFanout(inner)
    await elsewhere.create(record("r"))
    follower = asyncio.create_task(collect(here, "r"))
    await publish_run(elsewhere, "r", 2)
    assert await follower == [1, 2, 3]
    assert inner.follows == 1


async def test_events_published_concurrently_are_delivered_in_seq_order() -> None:
    inner = CountingLog()
    log = LocalFanout(inner)
    await log.create(record("r"))
    inner.hold[1] = asyncio.Event()
    follower = asyncio.create_task(collect(log, "r"))
    first = asyncio.create_task(log.publish("r", "message.delta", {"delta": "a"}))
    await asyncio.sleep(0.01)  # seq 1 is in the log, its answer held back
    await log.publish("r", "message.delta", {"delta": "b"})  # seq 2 answers first
    await asyncio.sleep(0.01)
    assert not follower.done()
    inner.hold[1].set()
    await first
    await log.publish("r", "run.completed", {})
    assert await follower == [1, 2, 3]
    assert inner.follows == 0


async def test_a_failed_publish_sends_followers_back_to_the_log_without_a_gap() -> None:
    inner = CountingLog()
    log = LocalFanout(inner)
    await log.create(record("r"))
    inner.fail_after_write.add(2)  # seq 2 lands in the log, but its publish raises
    follower = asyncio.create_task(collect(log, "r"))
    await log.publish("r", "message.delta", {"delta": "a"})
    with pytest.raises(StoreUnavailable):
        await log.publish("r", "message.delta", {"delta": "b"})
    assert log.channels() == 0
    await log.publish("r", "run.completed", {})
    assert await follower == [1, 2, 3]
    assert inner.follows == 1


async def test_a_run_longer_than_max_events_continues_on_the_log() -> None:
    inner = CountingLog()
    log = LocalFanout(inner, max_events=3)
    await log.create(record("r"))
    follower = asyncio.create_task(collect(log, "r"))
    await publish_run(log, "r", 5)
    assert await follower == [1, 2, 3, 4, 5, 6]
    assert inner.follows == 1
    assert log.channels() == 0


async def test_channels_are_bounded() -> None:
    inner = CountingLog()
    log = LocalFanout(inner, max_channels=1)
    await log.create(record("a"))
    await log.create(record("b"))  # no channel: followed on the log
    assert log.channels() == 1
    follower = asyncio.create_task(collect(log, "b"))
    await publish_run(log, "b", 1)
    assert await follower == [1, 2]
    assert inner.follows == 1


class OneStepLog(CountingLog):
    """Records which of the log's calls were made."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def create(self, record: RunRecord) -> None:
        self.calls.append("create")
        await super().create(record)

    async def save(self, record: RunRecord) -> None:
        self.calls.append("save")
        await super().save(record)

    async def create_and_publish(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        self.calls.append("create_and_publish")
        await super().create(record)
        return await super().publish(record.run.id, type_, data)

    async def save_and_publish(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        self.calls.append("save_and_publish")
        await super().save(record)
        return await super().publish(record.run.id, type_, data)


async def test_a_runs_creation_and_end_reach_the_log_in_one_step_and_the_channel() -> None:
    inner = OneStepLog()
    log = LocalFanout(inner)
    created = await log.create_and_publish(record("r"), "run.created", {})
    follower = asyncio.create_task(collect(log, "r"))
    await asyncio.sleep(0.01)  # attached to the channel
    await log.publish("r", "message.delta", {})
    end = await log.save_and_publish(record("r"), "run.completed", {})
    assert (created.seq, end.seq) == (1, 3)
    assert await asyncio.wait_for(follower, timeout=2) == [1, 2, 3]
    assert inner.calls == ["create_and_publish", "save_and_publish"]  # not create/save
    assert inner.follows == 0 and log.channels() == 0
