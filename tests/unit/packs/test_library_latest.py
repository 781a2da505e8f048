"""PackLibrary's "latest" check: at most one store read (the pack count) per
`latest_check_s`, a sync only when the count changed, a named version never waits."""

from __future__ import annotations

from typing import Any

from app.manager.packs import PackLibrary
from app.packs import PackRegistry
from app.stores.memory import MemoryStore
from tests.unit.packs.helpers import minimal_pack


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.counts = 0
        self.lists = 0

    async def pack_count(self) -> int:
        self.counts += 1
        return await super().pack_count()

    async def list_packs(self) -> list[dict[str, Any]]:
        self.lists += 1
        return await super().list_packs()


def versioned(version: str) -> dict[str, Any]:
    document = minimal_pack()
    document["version"] = version
    return document


async def test_latest_reads_the_store_count_at_most_once_per_interval() -> None:
    store = CountingStore()
    now = [100.0]
    library = PackLibrary(PackRegistry(), store, latest_check_s=1.0, monotonic=lambda: now[0])
    await store.save_pack("test-pack", "1.0.0", versioned("1.0.0"))
    assert (await library.get("test-pack")).version == "1.0.0"
    assert (store.counts, store.lists) == (1, 1)
    await store.save_pack("test-pack", "2.0.0", versioned("2.0.0"))  # "another instance"
    now[0] += 0.5
    for _ in range(5):
        assert (await library.get("test-pack")).version == "1.0.0"  # within the interval
    assert (store.counts, store.lists) == (1, 1)
    now[0] += 0.6
    assert (await library.get("test-pack")).version == "2.0.0"
    assert (store.counts, store.lists) == (2, 2)
    now[0] += 1.1
    assert (await library.get("test-pack")).version == "2.0.0"  # unchanged: no sync
    assert (store.counts, store.lists) == (3, 2)
    assert (await library.get("test-pack", "1.0.0")).version == "1.0.0"  # named: no check
    assert store.counts == 3
