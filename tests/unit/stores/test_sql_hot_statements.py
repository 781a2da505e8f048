"""The statements every turn runs are cheap: the messages INSERT is built once and reused
with bind parameters; the conversation read by id and (SQLite) the head's compare-and-set
run on the driver (`app.stores.sql_hot`), not through SQLAlchemy's execution at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from app.domain import Usage, utcnow
from app.stores import sql_hot
from app.stores.sql import SqlStore
from tests.contract.builders import chain, conversation


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/parley.db")
    await store.open()
    yield store
    await store.close()


async def test_a_turns_statements_are_the_same_objects_each_turn(store: SqlStore) -> None:
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
        turns.append([c for c in executed if hasattr(c, "compile")])
    event.remove(store.engine.sync_engine, "before_execute", seen)
    first, second = turns
    # only the INSERT: the read and the head's compare-and-set run on the driver
    assert len(first) == len(second) == 1
    assert first[0] is second[0]
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
    assert sql_hot.sqlite_text(datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus2)) == (
        "2026-01-02 03:04:05.000000"
    )
    assert sql_hot.sqlite_text(datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC)) == (
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
    assert [s for s in statements if s.startswith("BEGIN")] == []
    assert len(statements) == 1  # the INSERT
    got = await store.get_conversation(conv.id, now=utcnow())
    assert got is not None and got.message_count == 2
