"""Turn numbers on a cold message cache: a numbered parent costs one short read, and what
it reads is the newest history the context walk needs next (it is not read twice)."""

from __future__ import annotations

from app.manager.message_cache import MessageCache, entry_bytes
from app.manager.turn_numbers import FIRST_BATCH, TurnNumbers
from tests.unit.test_message_cache import CountingStore, _long_path, _message


async def test_a_numbered_parent_costs_one_short_read_on_a_cold_cache() -> None:
    store = CountingStore()
    lineage, msgs = await _long_path(store, 1000)
    cache = MessageCache()
    assert await TurnNumbers(store, cache).turn_of(lineage, msgs[-1].id) == 500
    assert store.path_reads == [FIRST_BATCH]  # was one read of 500


async def test_the_context_walk_does_not_read_again_what_turn_of_read() -> None:
    store = CountingStore()
    lineage, msgs = await _long_path(store, 1000)
    cache = MessageCache()
    await TurnNumbers(store, cache).turn_of(lineage, msgs[-1].id)
    store.path_reads.clear()
    walked, _ = await cache.walk(
        store, lineage, msgs[-1].id, max_messages=FIRST_BATCH, token_budget=10**9
    )
    assert len(walked) == FIRST_BATCH and store.path_reads == []


async def test_unnumbered_history_is_still_counted_to_the_root() -> None:
    store = CountingStore()
    lineage, msgs = await _long_path(store, 1000, numbered=False)
    assert await TurnNumbers(store, MessageCache()).turn_of(lineage, msgs[-1].id) == 500
    assert store.path_reads == [FIRST_BATCH, 500, 500]


async def test_a_window_the_cache_no_longer_holds_is_read_once_with_the_number() -> None:
    store = CountingStore()
    lineage, msgs = await _long_path(store, 1000)
    cache = MessageCache(max_bytes=entry_bytes(msgs[0]) * 300)
    walk = cache.walk
    await walk(store, lineage, msgs[-1].id, max_messages=200, token_budget=10**9)
    cache.put("other", (_message(5000 + i, None) for i in range(300)))  # other turns
    assert cache.get(lineage, msgs[-1].id) is None
    store.path_reads.clear()
    assert await TurnNumbers(store, cache).turn_of(lineage, msgs[-1].id) == 500
    walked, _ = await walk(store, lineage, msgs[-1].id, max_messages=200, token_budget=10**9)
    assert len(walked) == 200 and store.path_reads == [226]  # was [64, 136]


async def test_a_cache_that_keeps_nothing_keeps_turn_of_short() -> None:
    store = CountingStore()
    lineage, msgs = await _long_path(store, 1000)
    cache = MessageCache(max_bytes=0)
    await cache.walk(store, lineage, msgs[-1].id, max_messages=200, token_budget=10**9)
    store.path_reads.clear()
    assert await TurnNumbers(store, cache).turn_of(lineage, msgs[-1].id) == 500
    assert store.path_reads == [FIRST_BATCH]  # the walk reads its window again anyway
