"""PostgreSQL's write-behind of run events (`app.coordination.sql_event_writer`): a batch
is one statement, a batch that passes `max_events` is trimmed in that statement, and a
run's end is written in the statement of its terminal event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy import event

from app.coordination import sql_event_writer
from app.coordination.base import EventsExpired, RunRecord
from app.coordination.sql_runs import SqlRunLog
from app.domain import Run, RunStatus
from app.stores.sql_tables import run_events, run_records
from tests.contract.coordination.conftest import clear_sql_coordination, sql_engine

pytestmark = pytest.mark.postgres


@contextmanager
def recorded_statements(engine: Any) -> Iterator[list[str]]:
    """The statements run through SQLAlchemy and on the asyncpg driver directly."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    originals = {name: getattr(asyncpg.Connection, name) for name in ("execute", "fetch")}

    def recording(original: Any) -> Any:
        async def run(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
            statements.append(query)
            return await original(self, query, *args, **kw)

        return run

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    for name, original in originals.items():
        setattr(asyncpg.Connection, name, recording(original))
    try:
        yield statements
    finally:
        for name, original in originals.items():
            setattr(asyncpg.Connection, name, original)
        event.remove(engine.sync_engine, "before_cursor_execute", count)


def new_record(run_id: str) -> RunRecord:
    run = Run(id=run_id, conversation_id="conv-1", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    return RunRecord(run=run, lineage_id="lin-1")


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("postgres_scratch"))  # (from a sync fixture)


@pytest_asyncio.fixture
async def engine(pg_url: str) -> AsyncIterator[Any]:
    url = pg_url
    await clear_sql_coordination(url)
    async with AsyncExitStack() as stack:
        yield await sql_engine(stack, url)


async def test_a_batch_of_events_is_written_in_one_statement(engine: Any) -> None:
    runs = SqlRunLog(engine)
    await runs.create(new_record("run-1"))
    with recorded_statements(engine) as statements:
        # ordinary events return at once: the three are one batch, the terminal one waits
        await runs.publish("run-1", "run.created", {"a": 1})
        await runs.publish("run-1", "message.created", {"b": [1, "x"]})
        await runs.publish("run-1", "run.completed", {})
    assert len(statements) == 1, statements
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(run_events.c.seq, run_events.c.data))).all()
        record = (await conn.execute(sa.select(run_records))).one()
    assert [(r.seq, r.data) for r in rows] == [(1, {"a": 1}), (2, {"b": [1, "x"]}), (3, {})]
    assert (record.last_seq, record.first_seq) == (3, 1)
    assert record.events_expire_at is not None  # the terminal event starts the retention
    await runs.close()


async def test_a_batch_past_max_events_keeps_only_the_newest_half(engine: Any) -> None:
    runs = SqlRunLog(engine, max_events=4)
    await runs.create(new_record("run-1"))
    for i in range(1, 11):  # one batch: nothing is written before the terminal event
        await runs.publish("run-1", "message.delta", {"i": i})
    await runs.publish("run-1", "run.completed", {})
    async with engine.connect() as conn:
        seqs = list((await conn.execute(sa.select(run_events.c.seq))).scalars())
        record = (await conn.execute(sa.select(run_records))).one()
    assert sorted(seqs) == [10, 11]
    assert (record.last_seq, record.first_seq) == (11, 10)
    other = SqlRunLog(engine)
    with pytest.raises(EventsExpired):
        async for _ in other.follow("run-1", after=0):
            pass
    assert [e.seq async for e in other.follow("run-1", after=9)] == [10, 11]
    await runs.close()
    await other.close()


async def test_a_runs_end_is_written_with_its_terminal_event(engine: Any) -> None:
    runs = SqlRunLog(engine, record_retention_s=600)
    record = new_record("run-1")
    await runs.create(record)
    await runs.publish("run-1", "run.created", {})
    done = record.model_copy(
        update={"run": record.run.model_copy(update={"status": RunStatus.completed})}
    )
    with recorded_statements(engine) as statements:
        end = await runs.save_and_publish(done, "run.completed", {"n": 2})
    assert len(statements) == 1, statements  # run.created, the end and its event
    assert end.seq == 2
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(run_records))).one()
        now = await conn.scalar(sa.select(sa.func.clock_timestamp()))
    assert RunRecord.model_validate(row.record) == done
    assert row.terminal and row.finished_at is not None and row.last_seq == 2
    assert timedelta(seconds=590) < row.expires_at - now <= timedelta(seconds=600)
    other = SqlRunLog(engine)
    assert await other.get("run-1") == done
    assert [e.type async for e in other.follow("run-1", after=0)] == [
        "run.created",
        "run.completed",
    ]
    await runs.close()
    await other.close()


async def test_a_run_and_its_first_event_are_created_in_one_statement(engine: Any) -> None:
    runs = SqlRunLog(engine)
    await runs.create(new_record("run-0"))  # (the heartbeat row is written once)
    with recorded_statements(engine) as statements:
        first = await runs.create_and_publish(new_record("run-1"), "run.created", {"n": 1})
    assert len(statements) == 1, statements
    assert (first.seq, first.type) == (1, "run.created")
    second = await runs.publish("run-1", "message.delta", {"n": 2})  # numbered here, after it
    assert second.seq == 2
    await runs.publish("run-1", "run.completed", {})
    other = SqlRunLog(engine)
    assert await other.get("run-1") == new_record("run-1")
    events = [(e.seq, e.type, e.data) async for e in other.follow("run-1", after=0)]
    assert events == [
        (1, "run.created", {"n": 1}),
        (2, "message.delta", {"n": 2}),
        (3, "run.completed", {}),
    ]
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(run_records).where(run_records.c.run_id == "run-1"))
        ).one()
    assert (row.owner, row.last_seq, row.first_seq, row.terminal) == (runs.instance_id, 3, 1, False)
    await runs.close()
    await other.close()


async def test_a_live_status_change_rides_with_its_events_batch(engine: Any) -> None:
    """`save_and_publish` of a live record (the executor's `running`) writes no statement
    of its own: the record goes with the event in its write-behind batch (was an UPDATE
    of its own first), and an end in the same batch still wins."""
    runs = SqlRunLog(engine)
    record = new_record("run-1")
    await runs.create(record)
    running = record.model_copy(
        update={"run": record.run.model_copy(update={"status": RunStatus.running})}
    )
    with recorded_statements(engine) as statements:
        first = await runs.save_and_publish(running, "message.created", {"m": 1})
        await runs.publish("run-1", "message.delta", {"d": "x"})
        await runs._writer.flush()  # type: ignore[union-attr]
    assert first.seq == 1
    assert len(statements) == 1 and statements[0].lstrip().startswith("WITH"), statements
    other = SqlRunLog(engine)
    assert await other.get("run-1") == running
    done = running.model_copy(
        update={"run": running.run.model_copy(update={"status": RunStatus.completed})}
    )
    await runs.save_and_publish(running, "message.completed", {"m": 1})
    await runs.save_and_publish(done, "run.completed", {})  # same batch as the live one
    assert await other.get("run-1") == done
    assert [e.seq async for e in other.follow("run-1", after=0)] == [1, 2, 3, 4]
    await runs.close()
    await other.close()


async def test_events_published_a_little_apart_share_the_terminal_events_statement(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer lingers (`LINGER_S`) after an ordinary event for more: a turn whose events
    come a millisecond or two apart (awaits in between, as a non-streamed reply's do) is
    one statement, not one per event; the terminal event ends the wait at once (a linger
    of 1 s here, so that waiting it out would show)."""
    monkeypatch.setattr(sql_event_writer, "LINGER_S", 1.0)
    runs = SqlRunLog(engine)
    await runs.create(new_record("run-1"))
    with recorded_statements(engine) as statements:
        for i, type_ in enumerate(("message.created", "message.delta", "message.completed")):
            await runs.publish("run-1", type_, {"i": i})
            await asyncio.sleep(0.002)  # the writer task runs meanwhile
        started = time.perf_counter()
        await runs.publish("run-1", "run.completed", {})
        waited = time.perf_counter() - started
    assert len(statements) == 1, statements
    assert waited < 0.5  # written when published (a round trip), not after the linger
    async with engine.connect() as conn:
        seqs = (await conn.execute(sa.select(run_events.c.seq))).scalars().all()
    assert sorted(seqs) == [1, 2, 3, 4]
    await runs.close()
