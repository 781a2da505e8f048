"""`ancestor_id`: the id a number of parent links above a message, ids only (the
visibility check of a fork's inherited history, review R8)."""

from __future__ import annotations

from app.stores.base import StateStore
from tests.contract.builders import append, chain, conversation, fork_of, grow


async def test_ancestor_id_follows_parent_links(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    _, msgs = await grow(store, c, 6)
    tip = msgs[-1].id
    for steps in range(6):
        assert await store.ancestor_id(c.lineage_id, tip, steps=steps) == msgs[5 - steps].id
    assert await store.ancestor_id(c.lineage_id, msgs[2].id, steps=2) == msgs[0].id
    # past the root, unknown ids, another lineage, negative steps: none
    assert await store.ancestor_id(c.lineage_id, tip, steps=6) is None
    assert await store.ancestor_id(c.lineage_id, tip, steps=100) is None
    assert await store.ancestor_id(c.lineage_id, "unknown", steps=0) is None
    assert await store.ancestor_id(c.lineage_id, "unknown", steps=3) is None
    assert await store.ancestor_id(c.lineage_id, tip, steps=-1) is None
    other = await store.create_conversation(conversation())
    assert await store.ancestor_id(other.lineage_id, tip, steps=0) is None


async def test_ancestor_id_across_branches_and_forks(store: StateStore) -> None:
    src = await store.create_conversation(conversation())
    src, shared = await grow(store, src, 4)
    # a fork at shared[1] and the source's own later turns branch off the shared history
    fork = await store.create_conversation(fork_of(src, shared[1].id))
    fork_msgs = chain(fork, shared[1], 3)
    await append(store, fork, fork_msgs)
    tip = fork_msgs[-1].id
    assert await store.ancestor_id(src.lineage_id, tip, steps=3) == shared[1].id
    assert await store.ancestor_id(src.lineage_id, tip, steps=4) == shared[0].id
    # the source's later messages are at these depths too, but not on the fork's path
    for steps, depth in ((2, 2), (1, 3)):
        found = await store.ancestor_id(src.lineage_id, tip, steps=steps)
        assert found == fork_msgs[depth - 2].id and found != shared[depth].id


async def test_ancestor_id_walks_a_long_path(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    _, msgs = await grow(store, c, 1500)
    assert await store.ancestor_id(c.lineage_id, msgs[-1].id, steps=1499) == msgs[0].id
    assert await store.ancestor_id(c.lineage_id, msgs[-1].id, steps=1500) is None
