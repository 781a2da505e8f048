"""PostgreSQL: a new connection prepares the turn's driver statements when it opens
(`app.stores.sql_driver.prepare_on_connect`), so its first turn does not: the store's
read and append, the run log's record writes and event batches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.coordination.sql_runs import SqlRunLog
from app.domain import Usage, utcnow
from app.stores.sql import SqlStore
from app.stores.sql_driver import driver_of
from tests.contract.builders import chain, conversation
from tests.services import scratch_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store() -> AsyncIterator[SqlStore]:
    async with scratch_postgres_database() as url:
        store = SqlStore(url)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


async def _prepared(conn: Any) -> set[str]:
    driver = await driver_of(conn)
    rows = await driver.fetch("SELECT statement FROM pg_prepared_statements")
    return {" ".join(r["statement"].split()) for r in rows}


def _has(prepared: set[str], fragment: str) -> bool:
    return any(fragment in statement for statement in prepared)


async def test_a_new_connection_has_the_turns_statements_prepared(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    runs = SqlRunLog(store.sql_engine())
    # two at once: the second is a new connection, opened after both registered
    async with store.engine.connect() as first, store.engine.connect() as second:
        for conn in (first, second):
            await runs.prepare(conn)
        prepared = await _prepared(second)
    assert _has(prepared, "FROM conversations WHERE id = $1")  # the read
    assert _has(prepared, "WITH cas AS ( UPDATE conversations")  # the append
    assert _has(prepared, "INSERT INTO run_records")  # a record created
    assert _has(prepared, "UPDATE run_records SET record = $1, terminal = true")  # ended
    assert _has(prepared, "WITH inserted AS ( INSERT INTO run_events")  # an event batch
    assert "could not prepare" not in caplog.text  # every statement ran (and was undone)
    await runs.close()


async def test_a_turns_store_calls_prepare_nothing_on_a_fresh_connection(
    store: SqlStore,
) -> None:
    await store.engine.dispose()  # every connection from now on is new
    async with store.engine.connect() as conn:
        before = await _prepared(conn)
    conv = await store.create_conversation(conversation())
    got = await store.get_conversation(conv.id, now=utcnow())
    assert got is not None
    await store.append_messages(got, chain(got, None, 2), usage=Usage(), cost_usd=0, now=utcnow())
    async with store.engine.connect() as conn:
        after = await _prepared(conn)
    assert {s for s in after - before if "conversations WHERE id = $1" in s or "cas" in s} == set()
    assert _has(before, "WITH cas AS ( UPDATE conversations")


async def test_turn_leases_run_on_the_driver_and_are_prepared(store: SqlStore) -> None:
    """`SqlLeaseLocks`: acquiring, a held lock's holder, renewing and releasing run on
    asyncpg (nothing through SQLAlchemy's execution), as the Core statements did."""
    from sqlalchemy import event

    from app.coordination.lease_backend import LeaseId
    from app.coordination.sql_locks import SqlLeaseBackend

    engine = store.sql_engine()
    backend = SqlLeaseBackend(engine)
    executed: list[Any] = []

    def seen(_conn: Any, clause: Any, *_: Any) -> None:
        executed.append(clause)

    event.listen(engine.sync_engine, "before_execute", seen)
    try:
        first = LeaseId("conv-1", "run-1", "tok-1")
        taken = await backend.try_acquire(first, 10.0)
        busy = await backend.try_acquire(LeaseId("conv-1", "run-2", "tok-2"), 10.0)
        renewed = await backend.renew(first, 10.0)
        released = await backend.release(first)
        again = await backend.try_acquire(LeaseId("conv-1", "run-3", "tok-3"), 10.0)
        not_mine = await backend.release(first)
    finally:
        event.remove(engine.sync_engine, "before_execute", seen)
    assert executed == []
    assert taken.acquired and taken.seq is not None
    assert not busy.acquired and busy.holder == "run-1"
    assert renewed and released and not not_mine
    assert again.acquired and again.seq == taken.seq + 1  # a released row: +1
    async with store.engine.connect() as old, store.engine.connect() as new:
        await backend.prepare(old)
        prepared = await _prepared(new)
    assert _has(prepared, "WITH taken AS (INSERT INTO turn_leases")
    assert _has(prepared, "UPDATE turn_leases SET token=$1::VARCHAR")
