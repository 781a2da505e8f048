"""`get_path` costs O(limit), not O(history): the last 20 messages of a 10,000-message path
read about as fast as those of a 10-message path (DESIGN §3, §11)."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.domain import Conversation
from app.stores.sql import SqlStore
from app.stores.sql_hot_path import path_read
from tests.contract.builders import append, chain, conversation
from tests.services import scratch_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/path.db")
        await store.open()
        yield store
        await store.close()
        return
    async with scratch_postgres_database() as url:
        store = SqlStore(url)
        await store.open()
        yield store
        await store.close()


async def _filled(store: SqlStore, n: int) -> Conversation:
    c = await store.create_conversation(conversation())
    parent = None
    for start in range(0, n, 2000):
        msgs = chain(c, parent, min(2000, n - start))
        c = await append(store, c, msgs)
        parent = msgs[-1]
    assert c.message_count == n
    return c


async def _median_read(store: SqlStore, c: Conversation, runs: int = 40) -> float:
    head = c.head_message_id or ""
    for _ in range(5):  # warm caches and the statement cache
        got = await store.get_path(c.lineage_id, head, limit=20)
        assert len(got) == min(20, c.message_count)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await store.get_path(c.lineage_id, head, limit=20)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def test_reading_the_tail_does_not_depend_on_history(sql_store: SqlStore) -> None:
    short = await _filled(sql_store, 10)
    long = await _filled(sql_store, 10_000)
    t_short = await _median_read(sql_store, short)
    t_long = await _median_read(sql_store, long)
    print(f"get_path(limit=20): 10 msgs {t_short * 1e3:.2f} ms, 10k msgs {t_long * 1e3:.2f} ms")
    assert t_long < 3 * t_short, (t_short, t_long)


async def test_sqlite_walks_the_primary_key(tmp_path: Path) -> None:
    """The plan behind the timing: each recursive step is a primary-key lookup."""
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/plan.db")
    await store.open()
    try:
        sql = path_read(store.engine.dialect).sql  # type: ignore[attr-defined]
        async with store.engine.connect() as conn:
            explained = await conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {sql}", ("lineage", "m", 20)
            )
            plan = [row[-1] for row in explained]
    finally:
        await store.close()
    searches = [p for p in plan if p.startswith(("SEARCH", "SCAN"))]
    assert [p for p in searches if "messages" in p or "parent" in p] == [
        "SEARCH messages USING INDEX sqlite_autoindex_messages_1 (lineage_id=? AND id=?)",
        "SEARCH parent USING INDEX sqlite_autoindex_messages_1 (lineage_id=? AND id=?)",
    ], plan


@pytest.mark.postgres
async def test_a_plan_made_while_the_table_was_small_does_not_outlive_its_growth() -> None:
    """asyncpg prepares statements; after five runs PostgreSQL may keep a generic plan
    costed on the statistics of that moment. Reads made on a near-empty table (a new
    deployment) then made every later path step scan the table: a 500-message page of a
    10,000-message path took over 5 s (the store's call timeout) instead of ~20 ms.
    `plan_cache_mode=force_custom_plan` (app.stores.sql_engine) plans each run afresh."""
    async with scratch_postgres_database() as url:
        store = SqlStore(url)
        await store.open()
        try:
            async with store.engine.connect() as conn:
                mode = (await conn.exec_driver_sql("SHOW plan_cache_mode")).scalar_one()
            assert mode == "force_custom_plan"
            short = await _filled(store, 10)
            for _ in range(8):  # past the five custom plans of a prepared statement
                await store.get_path(short.lineage_id, short.head_message_id or "", limit=500)
            long = await _filled(store, 10_000)
            started = time.perf_counter()
            page = await store.get_path(long.lineage_id, long.head_message_id or "", limit=500)
            elapsed = time.perf_counter() - started
        finally:
            await store.close()
    assert len(page) == 500
    assert elapsed < 1.0, f"a 500-message page took {elapsed:.2f} s"
