"""The statements every turn runs are cheap: the conversation read by id
(`app.stores.sql_hot`) and `append_messages`' compare-and-set and INSERT
(`app.stores.sql_hot_append`) run on the driver, not through SQLAlchemy's execution at
all, on SQLite and on PostgreSQL (where the append is one statement)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from app.domain import Usage, utcnow
from app.errors import Conflict, ConversationNotFound
from app.stores import sql_driver
from app.stores.sql import SqlStore
from tests.contract.builders import chain, checkpoint, conversation
from tests.services import scratch_postgres_database


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/parley.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def either_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path}/parley.db"
        else:
            url = await stack.enter_async_context(scratch_postgres_database())
        store = SqlStore(url)
        await store.open()
        stack.push_async_callback(store.close)
        yield store


async def test_a_turn_runs_no_statement_through_sqlalchemy(either_store: SqlStore) -> None:
    store = either_store
    conv = await store.create_conversation(conversation())
    executed: list[Any] = []

    def seen(_conn: Any, clause: Any, *_: Any) -> None:
        executed.append(clause)

    event.listen(store.engine.sync_engine, "before_execute", seen)
    turns: list[list[Any]] = []
    head = None
    for _ in range(2):
        executed.clear()
        got = await store.get_conversation(conv.id, now=utcnow())
        assert got is not None and got.version == conv.version
        msgs = chain(conv, head, 2)
        conv = await store.append_messages(
            conv, msgs, usage=Usage(input_tokens=3), cost_usd=0.5, now=utcnow()
        )
        head = msgs[-1]
        turns.append(list(executed))
    event.remove(store.engine.sync_engine, "before_execute", seen)
    assert turns == [[], []]
    assert conv.message_count == 4 and conv.usage.input_tokens == 6 and conv.usage.cost_usd == 1.0
    again = await store.get_conversation(conv.id, now=utcnow())
    assert again == conv


async def test_the_conversation_read_bypasses_sqlalchemy_execution(store: SqlStore) -> None:
    conv = await store.create_conversation(conversation())
    executed: list[Any] = []

    def seen(_conn: Any, clause: Any, *_: Any) -> None:
        executed.append(clause)

    event.listen(store.engine.sync_engine, "before_execute", seen)
    try:
        got = await store.get_conversation(conv.id, now=utcnow())
    finally:
        event.remove(store.engine.sync_engine, "before_execute", seen)
    assert got == conv
    assert executed == []


async def test_the_driver_read_hides_a_conversation_from_the_instant_it_expires(
    store: SqlStore,
) -> None:
    """SQLite compares the text of the timestamps: `now` must be written in exactly the
    stored format, including a zero microsecond (`isoformat` would drop it)."""
    conv = await store.create_conversation(conversation())
    at = utcnow().replace(microsecond=0) + timedelta(hours=1)
    await store.touch_conversation(conv.id, at)
    before = await store.get_conversation(conv.id, now=at - timedelta(microseconds=1))
    assert before is not None and before.expires_at == at
    assert await store.get_conversation(conv.id, now=at) is None
    assert await store.get_conversation(conv.id, now=at + timedelta(microseconds=1)) is None


def test_sqlite_text_is_sqlalchemys_fixed_width_utc_format() -> None:
    from datetime import UTC, datetime, timezone

    plus2 = timezone(timedelta(hours=2))
    assert sql_driver.sqlite_text(datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus2)) == (
        "2026-01-02 03:04:05.000000"
    )
    assert sql_driver.sqlite_text(datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC)) == (
        "2026-01-02 03:04:05.000007"
    )


async def test_sqlites_begin_runs_on_the_driver_not_through_sqlalchemy(store: SqlStore) -> None:
    conv = await store.create_conversation(conversation())
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await store.append_messages(
            conv, chain(conv, None, 2), usage=Usage(), cost_usd=0, now=utcnow()
        )
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    assert statements == []  # BEGIN IMMEDIATE and every statement ran on the driver
    got = await store.get_conversation(conv.id, now=utcnow())
    assert got is not None and got.message_count == 2


async def test_sqlite_connections_are_rolled_back_on_return_only_inside_a_transaction(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's reset (`sql_engine._on_reset`): a connection that committed, or never
    began a transaction, goes back without a ROLLBACK (a hand-off to aiosqlite's thread
    each, four per turn); one still inside a transaction is rolled back."""
    import aiosqlite

    rollbacks: list[bool] = []
    original = aiosqlite.Connection.rollback

    async def rollback(self: aiosqlite.Connection) -> None:
        rollbacks.append(self.in_transaction)
        await original(self)

    monkeypatch.setattr(aiosqlite.Connection, "rollback", rollback)
    conv = await store.create_conversation(conversation())
    await store.get_conversation(conv.id, now=utcnow())
    first = chain(conv, None, 2)
    conv = await store.append_messages(conv, first, usage=Usage(), cost_usd=0, now=utcnow())
    assert rollbacks == []
    async with store.engine.connect() as conn:
        driver = await sql_driver.driver_of(conn)
        await driver.execute("BEGIN IMMEDIATE")
    assert rollbacks == [True]
    # its write lock was released: the next write goes through
    await store.append_messages(
        conv, chain(conv, first[-1], 2), usage=Usage(), cost_usd=0, now=utcnow()
    )


async def test_an_auto_checkpoint_turns_listing_bypasses_sqlalchemy_execution(
    either_store: SqlStore,
) -> None:
    """`list_checkpoints` (every auto checkpoint turn lists the autos to prune) is one
    statement on the driver (`sql_checkpoints.checkpoints_read`): same checkpoints, same
    order, the kind filter kept."""
    store = either_store
    conv = await store.create_conversation(conversation())
    msgs = chain(conv, None, 3)
    conv = await store.append_messages(conv, msgs, usage=Usage(), cost_usd=0.0, now=utcnow())
    made = [
        checkpoint(conv, m.id, kind=kind, message_count=i + 1)
        for i, (m, kind) in enumerate(zip(msgs, ("auto", "manual", "auto"), strict=True))
    ]
    for cp in made:
        await store.create_checkpoint(cp)
    executed: list[Any] = []

    def seen(_conn: Any, clause: Any, *_: Any) -> None:
        executed.append(clause)

    event.listen(store.engine.sync_engine, "before_execute", seen)
    try:
        autos = await store.list_checkpoints(conv.id, kind="auto")
        every = await store.list_checkpoints(conv.id)
        none = await store.list_checkpoints("no-such-conversation")
    finally:
        event.remove(store.engine.sync_engine, "before_execute", seen)
    assert executed == []
    assert autos == [made[0], made[2]] and every == made and none == []


async def test_an_auto_checkpoints_write_on_sqlite_is_one_transaction_on_the_driver(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`create_checkpoint` on SQLite: the conversation's check and the INSERT in one
    `SqliteWriter.transaction` (one hand-off to aiosqlite's thread), nothing through
    SQLAlchemy's execution; the checkpoint reads back as written; a duplicate id is still
    `Conflict` and a missing conversation `ConversationNotFound`, with nothing stored."""
    conv = await store.create_conversation(conversation())
    msgs = chain(conv, None, 2)
    conv = await store.append_messages(conv, msgs, usage=Usage(), cost_usd=0.0, now=utcnow())
    made = checkpoint(conv, msgs[1].id, kind="auto", message_count=2, turn=1, name="turn 1")
    transactions = [0]
    original = sql_driver.SqliteWriter.transaction

    async def counted(self: sql_driver.SqliteWriter, work: Any) -> Any:
        transactions[0] += 1
        return await original(self, work)

    monkeypatch.setattr(sql_driver.SqliteWriter, "transaction", counted)
    executed: list[Any] = []

    def seen(_conn: Any, clause: Any, *_: Any) -> None:
        executed.append(clause)

    event.listen(store.engine.sync_engine, "before_execute", seen)
    try:
        assert await store.create_checkpoint(made) == made
    finally:
        event.remove(store.engine.sync_engine, "before_execute", seen)
    assert executed == [] and transactions == [1]
    assert await store.get_checkpoint(conv.id, made.id) == made
    with pytest.raises(Conflict):
        await store.create_checkpoint(made)
    with pytest.raises(ConversationNotFound):
        await store.create_checkpoint(checkpoint(conversation(), None))
    assert await store.list_checkpoints(conv.id) == [made]
