"""Contract: uploaded pack documents are stored once per (id, version), first writer wins."""

from __future__ import annotations

import asyncio

from app.stores.base import StateStore


async def test_save_and_list_packs(store: StateStore) -> None:
    assert await store.list_packs() == []
    doc = {"id": "p", "version": "1.0.0", "nested": {"a": [1, 2, None]}}
    stored, created = await store.save_pack("p", "1.0.0", doc)
    assert created and stored == doc
    doc2 = {"id": "p", "version": "2.0.0"}
    await store.save_pack("p", "2.0.0", doc2)
    await store.save_pack("q", "1.0.0", {"id": "q"})
    assert await store.list_packs() == [doc, doc2, {"id": "q"}]


async def test_first_writer_wins(store: StateStore) -> None:
    first = {"id": "p", "description": "first"}
    await store.save_pack("p", "1.0.0", first)
    stored, created = await store.save_pack("p", "1.0.0", {"id": "p", "description": "second"})
    assert not created and stored == first
    assert await store.list_packs() == [first]


async def test_concurrent_uploads_store_one(store: StateStore) -> None:
    results = await asyncio.gather(*(store.save_pack("p", "1.0.0", {"n": i}) for i in range(8)))
    assert sum(created for _, created in results) == 1
    winner = next(doc for doc, created in results if created)
    assert all(doc == winner for doc, _ in results)
    assert await store.list_packs() == [winner]


async def test_pack_count_grows_with_each_stored_version_only(store: StateStore) -> None:
    """The cheap change signal instances poll to learn of uploads made elsewhere."""
    assert await store.pack_count() == 0
    await store.save_pack("p", "1.0.0", {"id": "p"})
    await store.save_pack("p", "2.0.0", {"id": "p", "v": 2})
    assert await store.pack_count() == 2
    await store.save_pack("p", "2.0.0", {"id": "p", "v": "refused"})  # first writer wins
    await store.save_pack("q", "1.0.0", {"id": "q"})
    assert await store.pack_count() == 3
