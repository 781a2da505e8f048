"""Turn numbers on a cold message cache: a numbered parent costs one short read, and what
it reads is the newest history the context walk needs next (it is not read twice)."""

from __future__ import annotations

from app.manager.message_cache import MessageCache
from app.manager.turn_numbers import FIRST_BATCH, TurnNumbers
from tests.unit.test_message_cache import CountingStore, _long_path


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
