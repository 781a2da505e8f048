"""The committed-message cache is bounded by the memory of its entries
(`PARLEY_MESSAGE_CACHE_MB`), and a cache too small to keep anything still walks."""

from __future__ import annotations

from datetime import UTC, datetime

from app.domain import Message, Role, Usage
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
    cache.put(_message(i, None) for i in range(100))
    assert len(cache) == 10 and cache.bytes <= one * 10
    assert cache.get("m00099") is not None and cache.get("m00000") is None  # LRU
    big = _message(200, None, text="x" * 100_000)
    cache.put([big])
    assert cache.bytes <= one * 10 and cache.get(big.id) is None  # larger than the budget


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
