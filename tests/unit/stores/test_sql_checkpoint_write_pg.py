"""PostgreSQL: `create_checkpoint` (every auto checkpoint turn writes one) is one asyncpg
transaction of two statements, the lineage locked as the conversation is read, then the
INSERT if the conversation is still there (`sql_checkpoints.postgres_insert`); through
Core it was BEGIN, the read, the lock, the read again, the INSERT and COMMIT. The rules
stay: a duplicate is `Conflict`, a missing conversation `ConversationNotFound`, and a
reclaim of the lineage that holds its lock is waited for and seen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest
from asyncpg.transaction import Transaction
from sqlalchemy import event

from app.domain import Usage, utcnow
from app.errors import Conflict, ConversationNotFound
from app.stores.sql import SqlStore
from app.stores.sql_engine import PG_LOCK_NAMESPACE
from tests.contract.builders import chain, checkpoint, conversation
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


@contextmanager
def driver_calls() -> Iterator[list[str]]:
    """The statements run on asyncpg (first word of each) and the transactions begun and
    committed there, from now on."""
    calls: list[str] = []
    patched: list[tuple[type, str, Any]] = []
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.Connection, name)

        def statement(original: Any = original) -> Any:
            async def run(self: Any, query: str, *args: Any, **kw: Any) -> Any:
                calls.append(query.split()[0].upper())
                return await original(self, query, *args, **kw)

            return run

        patched.append((asyncpg.Connection, name, original))
        setattr(asyncpg.Connection, name, statement())
    for name in ("start", "commit", "rollback"):
        original = getattr(Transaction, name)

        def step(original: Any = original, name: str = name) -> Any:
            async def run(self: Any) -> Any:
                calls.append(f"({name})")
                return await original(self)

            return run

        patched.append((Transaction, name, original))
        setattr(Transaction, name, step())
    try:
        yield calls
    finally:
        for owner, name, original in patched:
            setattr(owner, name, original)


async def test_a_checkpoint_is_one_driver_transaction_of_two_statements(store: SqlStore) -> None:
    conv = await store.create_conversation(conversation())
    msgs = chain(conv, None, 2)
    conv = await store.append_messages(conv, msgs, usage=Usage(), cost_usd=0.0, now=utcnow())
    made = checkpoint(conv, msgs[1].id, kind="auto", message_count=2, turn=1, name="turn 1")
    executed: list[Any] = []

    def seen(_conn: Any, clause: Any, *_: Any) -> None:
        executed.append(clause)

    event.listen(store.engine.sync_engine, "before_execute", seen)
    try:
        with driver_calls() as calls:
            assert await store.create_checkpoint(made) == made
    finally:
        event.remove(store.engine.sync_engine, "before_execute", seen)
    assert executed == []  # nothing through SQLAlchemy's execution
    # (asyncpg's transaction sends its BEGIN / COMMIT with `execute`)
    assert calls == ["(start)", "BEGIN;", "SELECT", "INSERT", "COMMIT;"], calls
    assert await store.get_checkpoint(conv.id, made.id) == made
    with pytest.raises(Conflict):
        await store.create_checkpoint(made)
    with pytest.raises(ConversationNotFound):
        await store.create_checkpoint(checkpoint(conversation(), None))
    assert await store.list_checkpoints(conv.id) == [made]


async def test_a_checkpoint_waits_for_a_reclaim_holding_the_lineage_and_sees_it(
    store: SqlStore,
) -> None:
    """A deletion holding the lineage's lock (exclusive) while the checkpoint's transaction
    asks for it (shared): the checkpoint waits, and once the deletion committed it finds
    the conversation gone (read again after the lock), not the row of before the wait."""
    conv = await store.create_conversation(conversation())
    msgs = chain(conv, None, 2)
    conv = await store.append_messages(conv, msgs, usage=Usage(), cost_usd=0.0, now=utcnow())
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    deleter = await asyncpg.connect(url)
    try:
        tx = deleter.transaction()
        await tx.start()
        await deleter.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", PG_LOCK_NAMESPACE, conv.lineage_id
        )
        made = checkpoint(conv, msgs[1].id, kind="auto", message_count=2)
        writing = asyncio.create_task(store.create_checkpoint(made))
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting for the lineage's lock
        await deleter.execute("DELETE FROM conversations WHERE id = $1", conv.id)
        await tx.commit()
        with pytest.raises(ConversationNotFound):
            await asyncio.wait_for(writing, 5)
    finally:
        await deleter.close()
    assert await store.list_checkpoints(conv.id) == []
