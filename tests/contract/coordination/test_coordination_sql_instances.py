"""SQL coordination specifics: a run whose instance died (no heartbeat) reads `failed`
with `instance_lost` and frees its idempotency key, whoever notices; run records and
keys survive a new instance (a restart); expired keys are swept in bounded batches."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy import event

from app.coordination import sql_run_end_behind
from app.coordination.base import IdempotencyRecord, RunRecord
from app.coordination.sql_clock import SqlClock
from app.coordination.sql_idempotency import SqlIdempotencyKeys, sweep_expired_keys
from app.coordination.sql_runs import SqlRunLog
from app.coordination.sql_write_batch import LINGER_S
from app.domain import Run, RunStatus
from app.errors import StoreUnavailable
from app.stores import sql_driver
from app.stores.sql_tables import idempotency_keys, messages, run_records
from tests.contract.coordination.conftest import clear_sql_coordination, sql_engine


def new_record(run_id: str) -> RunRecord:
    run = Run(id=run_id, conversation_id="conv-1", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    return RunRecord(run=run, lineage_id="lin-1")


@pytest.fixture(params=["sql-sqlite", pytest.param("sql-postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sql-sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/coord.db"
    return str(request.getfixturevalue("postgres_scratch"))


@pytest_asyncio.fixture
async def engines(sql_url: str) -> AsyncIterator[Any]:
    await clear_sql_coordination(sql_url)
    async with AsyncExitStack() as stack:

        async def new() -> Any:
            return await sql_engine(stack, sql_url)

        yield new


async def died(runs: SqlRunLog) -> None:
    """The instance stops renewing its heartbeat without a word (kill -9)."""
    assert runs._heartbeat.task is not None
    runs._heartbeat.task.cancel()
    runs._heartbeat.task = None  # close() then leaves its row alone


async def test_a_dead_instances_committed_run_is_not_lost_and_keeps_its_key(
    engines: Any,
) -> None:
    """A kill -9 between a turn's commit and its end record: the run is not failed (its
    key freed, a retry would run the turn twice) but left running for the manager's
    `RunTruth` to derive `completed` from the commit."""
    engine_a, engine_b = await engines(), await engines()
    a = SqlRunLog(engine_a, instance_ttl_s=1.0, heartbeat_s=0.1)
    b = SqlRunLog(engine_b, wake_s=0.2)
    keys_a, keys_b = SqlIdempotencyKeys(engine_a), SqlIdempotencyKeys(engine_b)
    lineage, first = f"lin-{uuid.uuid4().hex[:8]}", "msg-1"
    run = Run(id="run-1", conversation_id="conv-1", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    record = RunRecord(run=run, lineage_id=lineage, first_message_id=first)
    assert await keys_a.reserve("s", "k", IdempotencyRecord("fp", "run-1"), ttl_s=60) is None
    await a.create(record)
    row = {"id": first, "role": "user", "run_id": "run-1"}  # what the check reads
    async with engine_a.begin() as conn:
        await conn.execute(
            sa.insert(messages).values(
                lineage_id=lineage, id=first, parent_id=None, conversation_id="conv-1",
                depth=0, created_at=datetime.now(UTC), data=row,
            )
        )  # fmt: skip
    try:
        await died(a)
        await asyncio.sleep(1.5)  # past the instance TTL
        got = await b.get("run-1")
        assert got is not None and got.run.status == RunStatus.queued, got
        again = IdempotencyRecord(fingerprint="fp", ref="run-2")
        kept = await keys_b.reserve("s", "k", again, ttl_s=60)
        assert kept is not None and kept.ref == "run-1"  # the key still names the run
    finally:
        async with engine_a.begin() as conn:
            await conn.execute(sa.delete(messages).where(messages.c.lineage_id == lineage))
        await a.close()


async def test_a_dead_instances_run_is_lost_and_its_key_freed(engines: Any) -> None:
    engine_a, engine_b = await engines(), await engines()
    a = SqlRunLog(engine_a, instance_ttl_s=1.5, heartbeat_s=0.1)
    keys_a, keys_b = SqlIdempotencyKeys(engine_a), SqlIdempotencyKeys(engine_b)
    b = SqlRunLog(engine_b, wake_s=0.2)
    record = IdempotencyRecord(fingerprint="fp", ref="run-1")
    assert await keys_a.reserve("s", "k", record, ttl_s=60) is None
    await a.create(new_record("run-1"))
    await a.save(new_record("run-1"))
    assert (await b.get("run-1")) == new_record("run-1")  # alive: untouched
    await died(a)
    started = time.monotonic()
    deadline = started + 10
    while (got := await b.get("run-1")) is not None and not got.run.status.terminal:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert got is not None and got.run.status == RunStatus.failed
    assert got.run.error is not None and got.run.error.code == "instance_lost"
    assert time.monotonic() - started < 5  # the TTL (1.5 s) plus a read
    again = IdempotencyRecord(fingerprint="fp", ref="run-2")
    assert await keys_b.reserve("s", "k", again, ttl_s=60) is None  # the key is free
    await a.close()
    await b.close()


@pytest.mark.postgres
async def test_a_follower_on_another_instance_ends_when_the_runner_dies(
    postgres_scratch: str,
) -> None:
    await clear_sql_coordination(postgres_scratch)
    async with AsyncExitStack() as stack:
        a = SqlRunLog(
            await sql_engine(stack, postgres_scratch), instance_ttl_s=0.6, heartbeat_s=0.1
        )
        b = SqlRunLog(await sql_engine(stack, postgres_scratch), wake_s=0.2)
        await a.create(new_record("run-f"))
        await a.publish("run-f", "run.created", {})
        await a.publish("run-f", "message.delta", {"delta": "x"})
        follower = asyncio.create_task(_collect(b, "run-f"))
        await asyncio.sleep(0.3)
        await died(a)
        events = await asyncio.wait_for(follower, timeout=10)
        assert [e.type for e in events] == ["run.created", "message.delta", "run.failed"]
        assert events[-1].data["error"]["code"] == "instance_lost"
        assert events[-1].seq == 3
        await a.close()
        await b.close()


async def _collect(runs: SqlRunLog, run_id: str) -> list[Any]:
    return [e async for e in runs.follow(run_id, after=0)]


async def test_records_and_keys_survive_a_new_instance(engines: Any) -> None:
    first = SqlRunLog(await engines())
    keys = SqlIdempotencyKeys(await engines())
    await keys.reserve("s", "k", IdempotencyRecord(fingerprint="fp", ref="run-r"), ttl_s=60)
    done = new_record("run-r")
    done = done.model_copy(
        update={"run": done.run.model_copy(update={"status": RunStatus.completed})}
    )
    await first.create(new_record("run-r"))
    await first.save(done)
    await first.close()
    restarted = SqlRunLog(await engines(), sole_instance=True)
    assert await restarted.get("run-r") == done
    later = SqlIdempotencyKeys(await engines())
    existing = await later.reserve(
        "s", "k", IdempotencyRecord(fingerprint="fp", ref="run-x"), ttl_s=60
    )
    assert existing is not None and existing.ref == "run-r"
    await restarted.close()


async def test_a_sole_instance_fails_its_predecessors_runs_at_once(engines: Any) -> None:
    old = SqlRunLog(await engines(), instance_ttl_s=3600)
    await old.create(new_record("run-old"))
    await died(old)  # its heartbeat row would be valid for an hour
    new = SqlRunLog(await engines(), sole_instance=True)
    got = await new.get("run-old")
    assert got is not None and got.run.status == RunStatus.failed
    assert got.run.error is not None and got.run.error.code == "instance_lost"
    await new.close()
    await old.close()


async def test_expired_keys_are_swept_in_bounded_batches(
    engines: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await engines()
    past = datetime.now(UTC) - timedelta(seconds=5)
    rows = [
        {"scope": "s", "key": f"k{i}", "fingerprint": "f", "ref": f"r{i}", "extra": {}}
        for i in range(7)
    ]
    rows = [{**r, "expires_at": past} for r in rows]
    live = {**rows[0], "key": "live", "expires_at": past + timedelta(hours=1)}
    async with engine.begin() as conn:
        await conn.execute(sa.insert(idempotency_keys), [*rows, live])
    monkeypatch.setattr("app.coordination.sql_idempotency.SWEEP_BATCH", 3)
    sql = SqlClock(engine)
    counts = []
    for _ in range(4):
        async with sql.write() as conn:
            counts.append(await sweep_expired_keys(conn, sql))
    assert counts == [3, 3, 1, 0]
    async with engine.connect() as conn:
        left = (await conn.execute(sa.select(idempotency_keys.c.key))).scalars().all()
    assert left == ["live"]


def with_status(record: RunRecord, status: RunStatus) -> RunRecord:
    return record.model_copy(update={"run": record.run.model_copy(update={"status": status})})


async def test_a_sole_instance_writes_a_runs_creation_and_end_not_its_start(
    engines: Any,
) -> None:
    engine = await engines()
    runs = SqlRunLog(engine, sole_instance=True)

    async def row_status() -> str:
        async with engine.connect() as conn:
            raw = await conn.scalar(sa.select(run_records.c.record))
        return str(RunRecord.model_validate(raw).run.status)

    queued = new_record("run-s")
    await runs.create(queued)
    running = with_status(queued, RunStatus.running)
    await runs.save(running)
    assert await runs.get("run-s") == running  # this instance answers with the newest
    assert await row_status() == "queued"  # a write transaction spared
    done = with_status(queued, RunStatus.completed)
    await runs.save(done)
    assert await runs.get("run-s") == done
    if engine.dialect.name == "sqlite":  # the end is written behind (tested below)
        assert await row_status() == "queued"
        await runs.close()  # writes it
    assert await row_status() == "completed"
    await runs.close()
    restarted = SqlRunLog(await engines(), sole_instance=True)
    assert await restarted.get("run-s") == done
    await restarted.close()


async def _row_statuses(engine: Any) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(run_records.c.run_id, run_records.c.record))).all()
    return {r.run_id: str(RunRecord.model_validate(r.record).run.status) for r in rows}


@pytest.fixture
def counted_transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many SQLite write transactions ran (`SqliteWriter.transaction`)."""
    counts = [0]
    original = sql_driver.SqliteWriter.transaction

    async def counted(self: sql_driver.SqliteWriter, work: Any) -> Any:
        counts[0] += 1
        return await original(self, work)

    monkeypatch.setattr(sql_driver.SqliteWriter, "transaction", counted)
    return counts


async def test_a_sole_sqlite_instance_writes_a_runs_end_with_the_next_runs_creation(
    tmp_path: Path, counted_transactions: list[int]
) -> None:
    """Two runs created and ended back to back (a sequential client's turns): the first
    one's end rides in the transaction that creates the second (2 write transactions for
    its 3 writes, 3 before); meanwhile this instance answers with the ended record, and
    the row has it once written (and after a restart)."""
    async with AsyncExitStack() as stack:
        engine = await sql_engine(stack, f"sqlite+aiosqlite:///{tmp_path}/coord.db")
        runs = SqlRunLog(engine, sole_instance=True)
        await runs.warm_up()
        before = counted_transactions[0]
        for run_id in ("run-1", "run-2"):
            await runs.create(new_record(run_id))
            await runs.save(with_status(new_record(run_id), RunStatus.completed))
            got = await runs.get(run_id)
            assert got is not None and got.run.status == RunStatus.completed
        assert counted_transactions[0] - before == 2  # create 1; end 1 + create 2; ...
        assert await _row_statuses(engine) == {"run-1": "completed", "run-2": "queued"}
        await runs.close()  # ... end 2 at the latest when the instance stops
        assert counted_transactions[0] - before == 3
        assert await _row_statuses(engine) == {"run-1": "completed", "run-2": "completed"}
        restarted = SqlRunLog(engine, sole_instance=True)
        got = await restarted.get("run-2")
        assert got is not None and got.run.status == RunStatus.completed
        await restarted.close()


async def test_a_runs_end_written_behind_lands_within_the_linger_alone(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        engine = await sql_engine(stack, f"sqlite+aiosqlite:///{tmp_path}/coord.db")
        runs = SqlRunLog(engine, sole_instance=True)
        await runs.create(new_record("run-1"))
        await runs.save(with_status(new_record("run-1"), RunStatus.failed))
        await asyncio.sleep(LINGER_S * 4)
        assert await _row_statuses(engine) == {"run-1": "failed"}
        assert runs._live == {}  # (written: this instance no longer holds it)
        await runs.close()


async def test_a_runs_end_written_behind_is_in_before_its_conversation_is_erased(
    tmp_path: Path,
) -> None:
    """A conversation deleted right after its run ended: the run is erased (its end is
    written first, so the erasure does not take it for a live run and leave its row)."""
    async with AsyncExitStack() as stack:
        engine = await sql_engine(stack, f"sqlite+aiosqlite:///{tmp_path}/coord.db")
        runs = SqlRunLog(engine, sole_instance=True)
        await runs.create(new_record("run-1"))
        done = with_status(new_record("run-1"), RunStatus.completed)
        await runs.save(done)
        await runs.publish("run-1", "run.completed", {"run": {}})
        assert await runs.erase("conv-1", "lin-1") == []
        assert await _row_statuses(engine) == {}
        assert await runs.get("run-1") is None
        await runs.close()


async def test_a_failed_end_written_behind_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_run_end_behind, "END_RETRY_S", 0.05)
    async with AsyncExitStack() as stack:
        engine = await sql_engine(stack, f"sqlite+aiosqlite:///{tmp_path}/coord.db")
        runs = SqlRunLog(engine, sole_instance=True)
        await runs.create(new_record("run-1"))
        original = sql_driver.SqliteWriter.transaction
        failures = [1]

        async def once_unavailable(self: sql_driver.SqliteWriter, work: Any) -> Any:
            if failures[0]:
                failures[0] -= 1
                raise StoreUnavailable("down for a moment")
            return await original(self, work)

        monkeypatch.setattr(sql_driver.SqliteWriter, "transaction", once_unavailable)
        done = with_status(new_record("run-1"), RunStatus.completed)
        await runs.save(done)
        assert await runs.get("run-1") == done  # answered from memory meanwhile
        for _ in range(100):
            await asyncio.sleep(0.02)
            if await _row_statuses(engine) == {"run-1": "completed"}:
                break
        assert failures == [0] and await _row_statuses(engine) == {"run-1": "completed"}
        await runs.close()


async def test_a_sole_instance_that_dies_mid_run_leaves_it_lost(engines: Any) -> None:
    first = SqlRunLog(await engines(), sole_instance=True)
    await first.create(new_record("run-d"))
    await first.save(with_status(new_record("run-d"), RunStatus.running))
    await died(first)
    restarted = SqlRunLog(await engines(), sole_instance=True)
    got = await restarted.get("run-d")
    assert got is not None and got.run.status == RunStatus.failed
    assert got.run.error is not None and got.run.error.code == "instance_lost"
    await restarted.close()
    await first.close()


async def test_a_runs_record_writes_run_on_the_driver(engines: Any) -> None:
    """Created, running, ended: the record's writes bypass SQLAlchemy's execution
    (`app.coordination.sql_run_rows`) and store what Core stored."""
    engine = await engines()
    runs = SqlRunLog(engine)
    await runs.warm_up()  # the heartbeat and first sweep (through Core) are done
    executed: list[str] = []

    def seen(_conn: Any, clause: Any, *_: Any) -> None:
        executed.append(str(clause))

    event.listen(engine.sync_engine, "before_execute", seen)
    try:
        for run_id in ("run-a", "run-b"):
            await runs.create(new_record(run_id))
            await runs.save(with_status(new_record(run_id), RunStatus.running))
            await runs.save(with_status(new_record(run_id), RunStatus.completed))
    finally:
        event.remove(engine.sync_engine, "before_execute", seen)
    assert [s for s in executed if "run_records" in s] == []
    got = await runs.get("run-b")
    assert got is not None and got.run.status == RunStatus.completed
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(run_records).where(run_records.c.run_id == "run-b"))
        ).one()
    assert row.terminal and row.finished_at is not None and row.expires_at > row.finished_at
    assert RunRecord.model_validate(row.record) == got and row.owner == runs.instance_id
    assert (row.last_seq, row.first_seq, row.events_expire_at) == (0, 1, None)
    await runs.close()
