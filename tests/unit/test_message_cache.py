"""The committed-message cache is bounded by the memory of its entries
(`PARLEY_MESSAGE_CACHE_MB`), and a cache too small to keep anything still walks."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime

import pytest

from app.domain import Message, Part, Role, Usage
from app.manager.message_cache import MessageCache, entry_bytes
from app.stores.memory import MemoryStore
from tests.contract.builders import conversation


def _message(i: int, parent: str | None, text: str = "hello there") -> Message:
    return Message(
        id=f"m{i:05d}",
        parent_id=parent,
        conversation_id="c",
        role=Role.user if i % 2 == 0 else Role.assistant,
        content=text,
        depth=i,
        created_at=datetime.now(UTC),
    )


def test_the_cache_holds_at_most_its_byte_budget() -> None:
    one = entry_bytes(_message(0, None))
    cache = MessageCache(max_bytes=one * 10)
    cache.put("L", (_message(i, None) for i in range(100)))
    assert len(cache) == 10 and cache.bytes <= one * 10
    assert cache.get("L", "m00099") is not None and cache.get("L", "m00000") is None  # LRU
    big = _message(200, None, text="x" * 100_000)
    cache.put("L", [big])
    assert cache.bytes <= one * 10 and cache.get("L", big.id) is None  # larger than the budget


async def test_a_cache_that_keeps_nothing_still_walks_the_path() -> None:
    store = MemoryStore()
    await store.open()
    c = await store.create_conversation(conversation("c"))
    msgs: list[Message] = []
    for i in range(5):
        msgs.append(_message(i, msgs[-1].id if msgs else None))
    await store.append_messages(c, msgs, usage=Usage(), cost_usd=0.0, now=datetime.now(UTC))
    cache = MessageCache(max_bytes=0)
    walked, root = await cache.walk(
        store, c.lineage_id, msgs[-1].id, max_messages=10, token_budget=10_000
    )
    assert [e.message.id for e in walked] == [m.id for m in reversed(msgs)] and root
    assert len(cache) == 0


class CountingStore(MemoryStore):
    """A memory store that records the `limit` of every path read."""

    def __init__(self) -> None:
        super().__init__()
        self.path_reads: list[int] = []

    async def get_path(self, lineage_id: str, message_id: str, *, limit: int) -> list[Message]:
        self.path_reads.append(limit)
        return await super().get_path(lineage_id, message_id, limit=limit)


async def _long_path(
    store: MemoryStore, n: int, *, numbered: bool = True
) -> tuple[str, list[Message]]:
    await store.open()
    c = await store.create_conversation(conversation("c"))
    msgs: list[Message] = []
    for i in range(n):
        m = _message(i, msgs[-1].id if msgs else None)
        msgs.append(m.model_copy(update={"turn": i // 2 + 1 if numbered else None}))
    await store.append_messages(c, msgs, usage=Usage(), cost_usd=0.0, now=datetime.now(UTC))
    return c.lineage_id, msgs


async def test_a_cold_walk_of_a_200_message_window_reads_twice_not_four_times() -> None:
    store = CountingStore()
    lineage, msgs = await _long_path(store, 1000)
    cost = MessageCache().walk  # each message costs the same: overhead + "hello there"
    one, _ = await cost(store, lineage, msgs[-1].id, max_messages=1, token_budget=10_000)
    store.path_reads.clear()
    budget = one[0].tokens * 200
    walked, root = await MessageCache().walk(
        store, lineage, msgs[-1].id, max_messages=10_000, token_budget=budget
    )
    assert len(walked) == 200 and not root
    assert len(store.path_reads) == 2 and store.path_reads[0] == 64  # was 64, 64, 64, 64


async def test_a_walk_never_reads_more_than_max_messages_left() -> None:
    store = CountingStore()
    lineage, msgs = await _long_path(store, 300)
    walked, _ = await MessageCache().walk(
        store, lineage, msgs[-1].id, max_messages=100, token_budget=10**9
    )
    assert len(walked) == 100 and sum(store.path_reads) == 100


async def test_a_cache_too_small_to_keep_a_batch_still_reads_the_window_once() -> None:
    store = CountingStore()
    lineage, msgs = await _long_path(store, 1000)
    for max_bytes in (0, entry_bytes(msgs[0]) * 10):  # keeps nothing; 10 of each 64 read
        store.path_reads.clear()
        walked, _ = await MessageCache(max_bytes=max_bytes).walk(
            store, lineage, msgs[-1].id, max_messages=200, token_budget=10**9
        )
        assert [e.message.id for e in walked] == [m.id for m in reversed(msgs[-200:])]
        assert store.path_reads == [64, 136]  # was 200 reads (one per message after the 64th)


def _held_bytes_per_entry(messages: list[Message]) -> float:
    """What a cache holding `messages` (parsed from JSON, as a store read makes them)
    really keeps per entry, by tracemalloc."""
    rows = [m.model_dump_json() for m in messages]
    cache = MessageCache(max_bytes=10**12)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache.put("L", (Message.model_validate_json(r) for r in rows))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held / len(cache)


@pytest.mark.parametrize("words", [1, 30, 2000])
def test_entry_bytes_is_what_an_entry_holds_within_a_quarter(words: int) -> None:
    msgs: list[Message] = []
    for i in range(500):
        text = " ".join(f"word{(i + j) % 97}" for j in range(words))
        m = _message(i, msgs[-1].id if msgs else None, text=text)
        msgs.append(m.model_copy(update={"parts": [Part(type="text", text=text)], "turn": i}))
    estimate = sum(entry_bytes(m) for m in msgs) / len(msgs)
    assert 0.8 <= estimate / _held_bytes_per_entry(msgs) <= 1.25


async def test_one_message_id_in_two_lineages_is_two_entries() -> None:
    """An import keeps the document's message ids in a new lineage with the document's
    content: each lineage's walk must see its own (outside tester T8)."""
    store = MemoryStore()
    await store.open()
    original = await store.create_conversation(conversation("orig"))
    copy = await store.create_conversation(conversation("copy"))
    assert original.lineage_id != copy.lineage_id
    secret = [_message(0, None, text="card 4111-1111-1111-1111")]
    redacted = [
        secret[0].model_copy(update={"content": "card [REDACTED]", "conversation_id": "copy"})
    ]
    await store.append_messages(
        original, secret, usage=Usage(), cost_usd=0.0, now=datetime.now(UTC)
    )
    await store.append_messages(copy, redacted, usage=Usage(), cost_usd=0.0, now=datetime.now(UTC))
    cache = MessageCache()
    for conv, text in ((original, "card 4111-1111-1111-1111"), (copy, "card [REDACTED]")):
        walked, _ = await cache.walk(
            store, conv.lineage_id, "m00000", max_messages=10, token_budget=10_000
        )
        assert [e.message.content for e in walked] == [text]
        assert walked[0].provider_message.content == text
    assert len(cache) == 2
    found = cache.get(copy.lineage_id, "m00000")
    assert found is not None and found.message.content == "card [REDACTED]"
