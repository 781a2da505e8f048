"""`StateStore.footprint`: deleting every conversation of a lineage, in any order and by
user erasure, leaves no rows, entries or keys behind (on every backend, Redis Cluster
included); each deletion on the way keeps what the remaining conversations reach."""

from __future__ import annotations

import pytest

from app.domain import Conversation, Message
from app.stores.base import StateStore
from tests.contract.builders import checkpoint, conversation, fork_of, grow, present
from tests.contract.test_context_items import item_of


class Lineage:
    """A root with an abandoned branch and a checkpoint, a fork of it with its own
    checkpoint, a fork of that fork, and a fork with no message of its own; a context
    item on each of the first three."""

    def __init__(self) -> None:
        self.convs: dict[str, Conversation] = {}
        self.msgs: dict[str, list[Message]] = {}

    async def build(self, store: StateStore) -> None:
        a = await store.create_conversation(conversation(user_id="ann"))
        a, a1 = await grow(store, a, 4)
        # abandon a1[2:], grow a branch from a1[1]
        a = await store.update_conversation(
            a.model_copy(update={"head_message_id": a1[1].id, "message_count": 2}),
            expected_version=a.version,
        )
        a, a2 = await grow(store, a, 3)
        await store.create_checkpoint(checkpoint(a, a1[3].id, message_count=4))
        b = await store.create_conversation(fork_of(a, a2[0].id, message_count=3))
        b, b1 = await grow(store, b, 3)
        await store.create_checkpoint(checkpoint(b, b1[0].id, message_count=4))
        c = await store.create_conversation(fork_of(b, b1[1].id, user_id="cat", message_count=5))
        c, c1 = await grow(store, c, 2)
        d = await store.create_conversation(fork_of(a, a2[-1].id, message_count=5))
        for holder in (a, b, c):
            await store.save_context_item(item_of(holder))
        self.convs = {"a": a, "b": b, "c": c, "d": d}
        self.msgs = {"a": a1 + a2, "b": b1, "c": c1, "d": []}

    @property
    def lineage_id(self) -> str:
        return self.convs["a"].lineage_id

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.convs.values()]

    async def footprint(self, store: StateStore) -> dict[str, int]:
        return await store.footprint(self.lineage_id, self.ids)

    async def reads_whole_path(self, store: StateStore, name: str) -> None:
        conv = self.convs[name]
        path = await store.get_path(conv.lineage_id, conv.head_message_id or "", limit=100)
        assert len(path) == conv.message_count, name


async def test_footprint_counts_what_a_lineage_stores(store: StateStore) -> None:
    lin = Lineage()
    await lin.build(store)
    fp = await lin.footprint(store)
    assert fp["conversations"] == 4
    assert fp["messages"] == 4 + 3 + 3 + 2
    assert fp["checkpoints"] == 2
    assert fp["context_items"] == 3
    assert all(v >= 0 for v in fp.values())


@pytest.mark.parametrize(
    "order",
    [("a", "b", "c", "d"), ("d", "c", "b", "a"), ("b", "a", "d", "c"), ("c", "a", "d", "b")],
)
async def test_deleting_every_conversation_of_a_lineage_leaves_nothing(
    store: StateStore, order: tuple[str, ...]
) -> None:
    lin = Lineage()
    await lin.build(store)
    left = set(lin.convs)
    for name in order:
        assert await store.delete_conversation(lin.convs[name].id)
        left.discard(name)
        for other in left:
            await lin.reads_whole_path(store, other)
        # a remaining conversation's own messages stay, branches included
        for other in left:
            own = [m.id for m in lin.msgs[other]]
            assert await present(store, lin.lineage_id, own) == set(own)
    fp = await lin.footprint(store)
    assert fp == dict.fromkeys(fp, 0)
    everything = [m.id for ms in lin.msgs.values() for m in ms]
    assert await present(store, lin.lineage_id, everything) == set()


async def test_erasing_the_users_of_a_lineage_leaves_nothing(store: StateStore) -> None:
    lin = Lineage()
    await lin.build(store)
    # each deleted conversation with its lineage and created_at (erasing its runs needs
    # them), by id
    c = lin.convs["c"]
    assert await store.delete_user_conversations("cat") == [(c.id, c.lineage_id, c.created_at)]
    await lin.reads_whole_path(store, "b")
    assert await store.delete_user_conversations("ann") == sorted(
        (lin.convs[n].id, lin.lineage_id, lin.convs[n].created_at) for n in ("a", "b", "d")
    )
    fp = await lin.footprint(store)
    assert fp == dict.fromkeys(fp, 0)
