"""Review R-J: deleting in a lineage of many forks on the SQL stores.

The reclaim bound the lineage's other conversations as parameters: NOT IN (every other
id), IN (every fork's id) and the fork points, about 3 x N for N forks. asyncpg refuses
more than 32,767 arguments (stock SQLite 32,766 variables), so from ~10,900 forks no
conversation of the lineage could be deleted, nor a user erased who had one. Forks are
O(1) and unlimited. The forks are inserted in bulk (the store's rows, one executemany):
12,000 store calls would take most of a minute. The deletions must still follow the
rules (`app.stores.sql_reclaim`) exactly, at that size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.stores.sql import SqlStore
from app.stores.sql_tables import conversation_row, conversations
from tests.contract.builders import conversation, fork_of, grow, present, tick
from tests.services import scratch_postgres_database

FORKS = 12_000  # 3 x 12,000 > 32,767


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


async def test_deleting_in_a_lineage_of_many_forks_follows_the_rules(
    either_store: SqlStore,
) -> None:
    store = either_store
    a = await store.create_conversation(conversation(created_at=tick()))
    _, a_msgs = await grow(store, a, 2)
    head = a_msgs[-1].id
    rows = [
        conversation_row(fork_of(a, head, message_count=2, created_at=tick())) for _ in range(FORKS)
    ]
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(conversations), rows)
    own = await store.create_conversation(fork_of(a, head, message_count=2, created_at=tick()))
    _, own_msgs = await grow(store, own, 2)
    # Bob's fork B, a fork C of it, B deleted and forked again under its id (ca3dbab).
    bob_b = await store.create_conversation(fork_of(a, head, message_count=2, created_at=tick()))
    _, bob_msgs = await grow(store, bob_b, 2)
    c = await store.create_conversation(
        fork_of(bob_b, bob_msgs[-1].id, message_count=4, created_at=tick())
    )
    assert await store.delete_conversation(bob_b.id)
    await store.create_conversation(
        fork_of(a, head, conversation_id=bob_b.id, message_count=2, created_at=tick())
    )
    everything = [m.id for m in a_msgs + own_msgs + bob_msgs]

    # The source's messages stay: every fork's point reaches them.
    assert await store.delete_conversation(a.id)
    assert await present(store, a.lineage_id, everything) == set(everything)
    # C was the last to reach bob's B messages; the new B did not write them.
    assert await store.delete_conversation(c.id)
    assert await present(store, a.lineage_id, everything) == {m.id for m in a_msgs + own_msgs}
    # A fork's own messages go with it.
    assert await store.delete_conversation(own.id)
    assert await present(store, a.lineage_id, everything) == {m.id for m in a_msgs}

    async with store.engine.connect() as conn:
        left = await conn.scalar(
            sa.select(sa.func.count()).where(conversations.c.lineage_id == a.lineage_id)
        )
    assert left == FORKS + 1
