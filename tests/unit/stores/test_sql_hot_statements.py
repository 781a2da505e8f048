"""The statements every turn runs (conversation by id, the head compare-and-set, the
messages INSERT) are built once and reused with bind parameters, not rebuilt per call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from app.domain import Usage, utcnow
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
    assert len(first) == len(second) == 3  # SELECT, UPDATE ... RETURNING, INSERT
    # the second turn's head is not None, so its compare-and-set is the other variant
    assert first[0] is second[0] and first[2] is second[2]
    assert conv.message_count == 4 and conv.usage.input_tokens == 6 and conv.usage.cost_usd == 1.0
    again = await store.get_conversation(conv.id, now=utcnow())
    assert again == conv
