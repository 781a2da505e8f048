"""PostgreSQL: which coordination statements commit without waiting for their WAL flush
(`app.stores.sql_driver.ASYNC_COMMIT`). A run's creation, its events before the terminal
one and a turn lease's acquisition do (nothing under them is committed yet, and the next
synchronous commit flushes them first); a run's end, its terminal event, a lease's
renewal and release stay synchronous, as do the store's writes (the turn's messages)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from app.coordination.base import RunRecord
from app.coordination.lease_backend import LeaseId
from app.coordination.sql_locks import SqlLeaseBackend
from app.coordination.sql_runs import SqlRunLog
from app.domain import Run, RunStatus, Usage, utcnow
from app.stores.sql import SqlStore
from tests.contract.builders import chain, conversation
from tests.contract.coordination.conftest import clear_sql_coordination, sql_engine

pytestmark = pytest.mark.postgres


@contextmanager
def commit_modes() -> Iterator[list[tuple[str, str]]]:
    """(statement, `synchronous_commit` in force at its commit) for every statement run on
    the asyncpg driver in autocommit: each is run in a transaction of its own (what
    autocommit makes of it) and the setting read before that transaction commits."""
    seen: list[tuple[str, str]] = []
    names = ("execute", "fetch", "fetchrow", "fetchval")
    originals = {name: getattr(asyncpg.Connection, name) for name in names}

    def observing(original: Any) -> Any:
        async def run(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
            if self.is_in_transaction() or not args:
                return await original(self, query, *args, **kw)
            async with self.transaction():
                result = await original(self, query, *args, **kw)
                mode = await self._execute(  # (not a patched method)
                    "SELECT current_setting('synchronous_commit')", (), 0, None
                )
                seen.append((" ".join(query.split()), mode[0][0]))
            return result

        return run

    for name, original in originals.items():
        setattr(asyncpg.Connection, name, observing(original))
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(asyncpg.Connection, name, original)


def _mode_of(seen: list[tuple[str, str]], fragment: str) -> list[str]:
    return [mode for statement, mode in seen if fragment in statement]


def new_record(run_id: str) -> RunRecord:
    run = Run(id=run_id, conversation_id="conv-1", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    return RunRecord(run=run, lineage_id="lin-1")


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("postgres_scratch"))


@pytest_asyncio.fixture
async def engine(pg_url: str) -> AsyncIterator[Any]:
    await clear_sql_coordination(pg_url)
    async with AsyncExitStack() as stack:
        yield await sql_engine(stack, pg_url)


async def test_a_runs_events_commit_asynchronously_its_creation_and_end_do_not(
    engine: Any,
) -> None:
    runs = SqlRunLog(engine)
    record = new_record("run-1")
    with commit_modes() as seen:
        await runs.create_and_publish(record, "run.created", {"run": "run-1"})
        await runs.publish("run-1", "message.created", {"a": 1})
        await runs.publish("run-1", "message.delta", {"b": 2})
        await runs._writer.flush("run-1")  # type: ignore[union-attr]  # a batch of its own
        done = record.model_copy(
            update={"run": record.run.model_copy(update={"status": RunStatus.completed})}
        )
        await runs.save_and_publish(done, "run.completed", {})
    # the creation is synchronous: lost in a crash, its end could never be written (R2-1)
    assert _mode_of(seen, "INSERT INTO run_records") == ["on"]
    batches = _mode_of(seen, "INSERT INTO run_events (run_id, seq, type, data) SELECT")
    assert batches == ["off", "on"], seen  # the events, then the end with its event
    other = SqlRunLog(engine)
    assert await other.get("run-1") == done
    assert [e.type async for e in other.follow("run-1", after=0)] == [
        "run.created",
        "message.created",
        "message.delta",
        "run.completed",
    ]
    await runs.close()
    await other.close()


async def test_a_terminal_event_published_alone_commits_synchronously(engine: Any) -> None:
    runs = SqlRunLog(engine)
    await runs.create(new_record("run-1"))
    with commit_modes() as seen:
        await runs.publish("run-1", "run.failed", {})
    assert _mode_of(seen, "INSERT INTO run_events") == ["on"]
    await runs.close()


async def test_the_turns_append_commits_synchronously(pg_url: str) -> None:
    store = SqlStore(pg_url)
    await store.open()
    try:
        conv = await store.create_conversation(conversation())
        with commit_modes() as seen:
            await store.append_messages(
                conv, chain(conv, None, 2), usage=Usage(), cost_usd=0.0, now=utcnow(), status=None
            )
        assert _mode_of(seen, "WITH cas AS ( UPDATE conversations") == ["on"]
    finally:
        await store.close()


async def test_a_lease_is_taken_renewed_and_released_synchronously(
    engine: Any,
) -> None:
    locks = SqlLeaseBackend(engine)
    lease = LeaseId("conv-async", "run-1", "tok-1")
    with commit_modes() as seen:
        taken = await locks.try_acquire(lease, 10.0)
        assert taken.acquired and taken.seq is not None
        busy = await locks.try_acquire(LeaseId("conv-async", "run-2", "tok-2"), 10.0)
        assert not busy.acquired and busy.holder == "run-1"
        assert await locks.renew(lease, 10.0)
        assert await locks.release(lease)
    assert _mode_of(seen, "INSERT INTO turn_leases") == ["on", "on"]
    assert _mode_of(seen, "UPDATE turn_leases SET expires_at") == ["on"]  # the renewal
    assert _mode_of(seen, "UPDATE turn_leases SET token") == ["on"]  # the release
    again = await locks.try_acquire(LeaseId("conv-async", "run-3", "tok-3"), 10.0)
    assert again.acquired and again.seq == taken.seq + 1  # released: the counter +1
