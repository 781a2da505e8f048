"""Checkpoints: named pointers to a message of a conversation."""

from __future__ import annotations

import pytest

from app.errors import Conflict, ConversationNotFound
from app.stores.base import StateStore
from tests.contract.builders import checkpoint, conversation, grow


async def test_checkpoint_crud(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    after, msgs = await grow(store, c, 3)
    first = checkpoint(
        after,
        msgs[0].id,
        name="start",
        description="before",
        message_count=1,
        metadata={"tag": ["a"]},
    )
    snap = checkpoint(after, msgs[2].id, kind="snapshot", message_count=3)
    auto = checkpoint(after, msgs[1].id, kind="auto", message_count=2)
    for cp in (first, snap, auto):
        assert await store.create_checkpoint(cp) == cp

    assert await store.list_checkpoints(c.id) == [first, snap, auto]  # oldest first
    assert await store.list_checkpoints(c.id, kind="snapshot") == [snap]
    assert await store.list_checkpoints(c.id, kind="manual") == [first]
    assert await store.list_checkpoints(c.id, kind="nope") == []
    assert await store.get_checkpoint(c.id, first.id) == first
    assert await store.get_checkpoint(c.id, "missing") is None
    assert await store.get_checkpoint("other-conversation", first.id) is None

    assert await store.delete_checkpoint(c.id, snap.id) is True
    assert await store.delete_checkpoint(c.id, snap.id) is False
    assert await store.delete_checkpoint("other-conversation", first.id) is False
    assert await store.list_checkpoints(c.id) == [first, auto]


async def test_checkpoint_of_empty_conversation(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    cp = checkpoint(c, None)
    await store.create_checkpoint(cp)
    assert await store.get_checkpoint(c.id, cp.id) == cp


async def test_checkpoints_are_per_conversation(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    b = await store.create_conversation(conversation())
    cp = checkpoint(a, None, checkpoint_id="same-id")
    await store.create_checkpoint(cp)
    other = checkpoint(b, None, checkpoint_id="same-id")
    await store.create_checkpoint(other)
    assert await store.list_checkpoints(a.id) == [cp]
    assert await store.list_checkpoints(b.id) == [other]
    assert await store.list_checkpoints("nobody") == []


async def test_checkpoint_needs_an_existing_conversation(store: StateStore) -> None:
    with pytest.raises(ConversationNotFound):
        await store.create_checkpoint(checkpoint(conversation(), None))


async def test_duplicate_checkpoint_id_conflicts(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    cp = checkpoint(c, None)
    await store.create_checkpoint(cp)
    with pytest.raises(Conflict):
        await store.create_checkpoint(cp.model_copy(update={"name": "other"}))
    assert await store.get_checkpoint(c.id, cp.id) == cp


async def test_checkpoints_go_with_their_conversation(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    cp = checkpoint(c, None)
    await store.create_checkpoint(cp)
    await store.delete_conversation(c.id)
    assert await store.list_checkpoints(c.id) == []
    assert await store.get_checkpoint(c.id, cp.id) is None
