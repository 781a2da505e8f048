"""In-process run log and idempotency keys: retention, caps, and expiry cost that does not
grow with how much is retained."""

from __future__ import annotations

import gc
import time

import pytest

from app.coordination.base import EventsExpired, IdempotencyRecord, RunRecord
from app.coordination.memory import MemoryRunLog
from app.coordination.memory_idempotency import MemoryIdempotencyKeys
from app.domain import Run, RunStatus, utcnow


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(run_id: str) -> RunRecord:
    return RunRecord(run=Run(id=run_id, conversation_id="c", created_at=utcnow()), lineage_id="c")


async def finished(log: MemoryRunLog, run_id: str, events: int = 2) -> None:
    await log.create(record(run_id))
    for i in range(events):
        await log.publish(run_id, "message.delta", {"i": i})
    await log.publish(run_id, "run.completed", {})


async def collect(log: MemoryRunLog, run_id: str, after: int = 0) -> list[int]:
    return [e.seq async for e in log.follow(run_id, after=after)]


async def test_events_then_records_expire() -> None:
    clock = Clock()
    log = MemoryRunLog(retention_s=10, record_retention_s=100, clock=clock)
    await finished(log, "a")
    assert await collect(log, "a") == [1, 2, 3]
    clock.now = 11
    await log.create(record("b"))  # expiry runs on create
    with pytest.raises(EventsExpired):
        await collect(log, "a")
    assert await log.get("a") is not None
    clock.now = 101
    await log.create(record("c"))
    assert await log.get("a") is None
    assert await log.get("b") is not None  # never finished: kept


async def test_finished_records_are_capped() -> None:
    log = MemoryRunLog(max_records=3, clock=Clock())
    for i in range(5):
        await finished(log, f"r{i}")
    await log.create(record("next"))
    assert [await log.get(f"r{i}") is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


async def test_long_runs_keep_their_newest_events() -> None:
    log = MemoryRunLog(max_events=10, clock=Clock())
    await finished(log, "long", events=24)  # 25 events
    with pytest.raises(EventsExpired):
        await collect(log, "long", after=0)
    assert await collect(log, "long", after=22) == [23, 24, 25]


async def test_run_creation_cost_does_not_grow_with_runs_retained() -> None:
    log = MemoryRunLog(clock=Clock(), max_records=1_000_000)

    async def batch(start: int, n: int) -> float:
        t0 = time.perf_counter()
        for i in range(start, start + n):
            await finished(log, f"r{i}", events=0)
        return time.perf_counter() - t0

    # The collector's full passes grow with every object retained, whatever the run log
    # does: measure the log's own cost (a full pass in the last batch made it flaky).
    gc.disable()
    try:
        first = await batch(0, 2_000)
        await batch(2_000, 16_000)
        last = await batch(18_000, 2_000)
    finally:
        gc.enable()
    assert last < 5 * first, (first, last)  # the O(retained) expiry made this ~200x


async def test_idempotency_records_expire_and_are_capped() -> None:
    clock = Clock()
    keys = MemoryIdempotencyKeys(clock=clock, max_records=2)
    rec = IdempotencyRecord(fingerprint="f", ref="r")
    assert await keys.reserve("s", "a", rec, ttl_s=10) is None
    assert await keys.reserve("s", "a", rec, ttl_s=10) == rec
    clock.now = 11
    assert await keys.reserve("s", "a", rec, ttl_s=10) is None  # expired: reserved again
    await keys.reserve("s", "b", rec, ttl_s=100)
    await keys.reserve("s", "c", rec, ttl_s=100)
    await keys.reserve("s", "d", rec, ttl_s=100)  # over the cap: soonest deadline goes
    assert await keys.reserve("s", "a", rec, ttl_s=10) is None


async def test_events_of_finished_runs_are_capped_in_total() -> None:
    log = MemoryRunLog(max_retained_events=10, clock=Clock())
    for i in range(6):
        await finished(log, f"r{i}")  # 3 events each
    for i in range(3):  # the oldest runs' events went first; their records stay
        with pytest.raises(EventsExpired):
            await collect(log, f"r{i}")
        assert await log.get(f"r{i}") is not None
    for i in range(3, 6):
        assert await collect(log, f"r{i}") == [1, 2, 3]
    assert log._retained == 9


async def test_events_only_log_drops_a_finished_run_with_its_events() -> None:
    # SqlRunLog on SQLite: records are in the database, the log holds events only, so a
    # finished run's entry must not outlive its events (it did: 10,000 records in RAM).
    log = MemoryRunLog(max_retained_events=10, events_only=True, clock=Clock())
    for i in range(50):
        await finished(log, f"r{i}")  # 3 events each
    assert log._retained <= 10
    assert len(log._runs) <= 4  # the runs whose events are still kept, nothing more
    assert await collect(log, "r49") == [1, 2, 3]
    assert await log.get("r0") is None


async def test_events_only_log_ignores_a_finished_record_saved_after_its_events_went() -> None:
    log = MemoryRunLog(max_retained_events=3, events_only=True, clock=Clock())
    await finished(log, "a")
    await finished(log, "b")  # a's events (and entry) went
    done = record("a")
    done.run.status = RunStatus.completed
    await log.save(done)
    assert await log.get("a") is None


async def test_a_finished_record_created_without_events_is_still_capped() -> None:
    log = MemoryRunLog(max_records=2, clock=Clock())
    for i in range(5):
        done = record(f"r{i}")
        done.run.status = RunStatus.completed
        await log.save(done)  # (no entry: saved after its entry had expired)
    await log.create(record("next"))
    assert sum([await log.get(f"r{i}") is not None for i in range(5)]) == 2


async def test_runs_nobody_follows_keep_no_condition() -> None:
    log = MemoryRunLog(clock=Clock())
    await finished(log, "a")
    assert log._runs["a"].waiters is None
    assert await collect(log, "a") == [1, 2, 3]  # a finished run: read without waiting


async def test_events_only_log_keeps_a_bounded_last_seq_of_runs_it_dropped() -> None:
    log = MemoryRunLog(max_retained_events=3, max_records=2, events_only=True, clock=Clock())
    for i in range(5):
        await finished(log, f"r{i}")
    with pytest.raises(EventsExpired) as expired:
        await collect(log, "r3", after=3)
    assert expired.value.last_seq == 3  # a reconnect learns where the log ended
    assert len(log._ended) <= 2
