"""PostgreSQL's event writer (`app.coordination.sql_event_writer`): one run's event that
cannot be encoded or stored costs no other run its events. Encoded when published, an
unencodable event (a lone surrogate) or one jsonb refuses (NUL) fails its publisher at
once; a batch the database refuses anyway is written again one run per statement, so
only the offending run's waiters fail and the other runs' events, ends and lease
releases are written. (Before: the batch was one statement encoded in the background,
and every run in it lost its events; their terminal events failed `StoreUnavailable`.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from app.coordination import sql_event_writer
from app.coordination.sql_locks import SqlLeaseLocks
from app.coordination.sql_runs import SqlRunLog
from app.domain import RunStatus
from app.errors import StoreUnavailable
from app.json_text import json_str
from app.stores.sql_tables import run_events, run_records
from tests.contract.coordination.conftest import clear_sql_coordination, sql_engine
from tests.contract.coordination.test_coordination_sql_event_writer import new_record

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("postgres_scratch"))  # (from a sync fixture)


@pytest_asyncio.fixture
async def engine(pg_url: str) -> AsyncIterator[Any]:
    await clear_sql_coordination(pg_url)
    async with AsyncExitStack() as stack:
        yield await sql_engine(stack, pg_url)


async def events_by_run(engine: Any) -> dict[str, list[tuple[int, str]]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(run_events.c.run_id, run_events.c.seq, run_events.c.type).order_by(
                    run_events.c.run_id, run_events.c.seq
                )
            )
        ).all()
    found: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        found.setdefault(row.run_id, []).append((row.seq, row.type))
    return found


@pytest.mark.parametrize("bad", ["x\ud800", "x\x00", {"k\x00": 1}])
async def test_an_unstorable_event_fails_its_publisher_and_no_other_run(
    engine: Any, bad: Any
) -> None:
    runs = SqlRunLog(engine)
    for run_id in ("run-1", "run-2", "run-3"):
        await runs.create(new_record(run_id))
    await runs.publish("run-1", "message.delta", {"d": "a"})
    with pytest.raises(ValueError):
        await runs.publish("run-2", "message.delta", {"d": bad})
    await runs.publish("run-3", "message.delta", {"d": "c\\u0000"})  # text, not NUL
    await runs.publish("run-2", "message.delta", {"d": "b"})  # numbered as if none failed
    ends = await asyncio.gather(
        *(runs.publish(run_id, "run.completed", {}) for run_id in ("run-1", "run-2", "run-3"))
    )
    assert [e.seq for e in ends] == [2, 2, 2]
    assert await events_by_run(engine) == {
        run_id: [(1, "message.delta"), (2, "run.completed")]
        for run_id in ("run-1", "run-2", "run-3")
    }
    await runs.close()


async def test_a_batch_the_database_refuses_is_written_one_run_at_a_time(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event the database refuses although it was encoded (here: the NUL check taken
    out, so jsonb refuses `\\u0000`) fails its own run only: the other runs' events, their
    ends and the lease their end releases are written."""
    monkeypatch.setattr(sql_event_writer, "event_json", json_str, raising=False)
    runs = SqlRunLog(engine)
    locks = SqlLeaseLocks(engine)
    for run_id in ("run-1", "run-2", "run-3"):
        await runs.create(new_record(run_id))
    conversation = f"conv-{uuid.uuid4().hex}"  # (lease rows outlive the test)
    lease = await locks.acquire(conversation, "run-1", wait_s=1)
    done = new_record("run-1").model_copy(
        update={"run": new_record("run-1").run.model_copy(update={"status": RunStatus.completed})}
    )
    # one batch: nothing awaits between the ordinary events and the three ends
    await runs.publish("run-1", "message.delta", {"d": "a"})
    await runs.publish("run-2", "message.delta", {"d": "x\x00"})
    await runs.publish("run-3", "message.delta", {"d": "c"})
    outcomes = await asyncio.gather(
        runs.save_and_publish_releasing(lease, done, "run.completed", {}),
        runs.publish("run-2", "run.completed", {}),
        runs.publish("run-3", "run.completed", {}),
        return_exceptions=True,
    )
    assert not isinstance(outcomes[0], BaseException) and outcomes[0].seq == 2
    assert isinstance(outcomes[1], StoreUnavailable)
    assert not isinstance(outcomes[2], BaseException) and outcomes[2].seq == 2
    assert await events_by_run(engine) == {
        "run-1": [(1, "message.delta"), (2, "run.completed")],
        "run-3": [(1, "message.delta"), (2, "run.completed")],
    }
    async with engine.connect() as conn:
        query = sa.select(run_records.c.run_id, run_records.c.terminal)
        terminal = {row.run_id: row.terminal for row in await conn.execute(query)}
    assert terminal == {"run-1": True, "run-2": False, "run-3": False}
    assert await locks.holder(conversation) is None  # released in run-1's statement
    again = await locks.acquire(conversation, "run-4", wait_s=0)  # and free here at once
    await again.release()
    await locks.close()
    await runs.close()
