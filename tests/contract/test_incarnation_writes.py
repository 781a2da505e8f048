"""Writes by conversation id that name the incarnation they must find
(`StateStore.delete_conversation`, `create_checkpoint`, `save_context_item` with
`incarnation=`; `app.domain.incarnation`): a namesake created under the id after the
conversation the caller read was deleted (another lineage, or a fork made again in its
lineage) is never deleted or written to, and a delete with `expected_version` deletes
nothing at another version (review R-A, R-A2)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from app.domain import Conversation, new_id, utcnow
from app.domain.incarnation import Incarnation
from app.errors import ConversationNotFound, VersionConflict
from app.stores.base import StateStore
from tests.contract.builders import checkpoint, conversation, grow, present
from tests.contract.test_context_items import item_of

Namesake = Callable[[StateStore], Awaitable[tuple[Conversation, Conversation]]]


async def of_another_lineage(store: StateStore) -> tuple[Conversation, Conversation]:
    """(the deleted one, bob's conversation created under its id in a lineage of its own)."""
    old = await store.create_conversation(conversation(lineage_id=f"lin-{new_id()}"))
    assert await store.delete_conversation(old.id)
    bob = await store.create_conversation(
        conversation(old.id, user_id="bob", lineage_id=f"lin-{new_id()}")
    )
    return old, bob


async def made_again_in_its_lineage(store: StateStore) -> tuple[Conversation, Conversation]:
    """(a deleted fork, the fork made again under its id: same id, lineage and version)."""
    source = await store.create_conversation(conversation())
    forked = conversation(f"fork-{new_id()}", lineage_id=source.lineage_id)
    old = await store.create_conversation(forked)
    assert await store.delete_conversation(old.id)
    later = old.created_at + timedelta(milliseconds=1)
    again = await store.create_conversation(
        forked.model_copy(update={"user_id": "bob", "created_at": later})
    )
    return old, again


NAMESAKES = [
    pytest.param(of_another_lineage, id="another-lineage"),
    pytest.param(made_again_in_its_lineage, id="fork-made-again"),
]


async def test_a_delete_of_the_incarnation_read_deletes_it(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    c, msgs = await grow(store, c, 2)
    assert await store.delete_conversation(c.id, incarnation=Incarnation.of(c)) is True
    assert await store.get_conversation(c.id, now=utcnow()) is None
    assert await present(store, c.lineage_id, [m.id for m in msgs]) == set()
    assert await store.delete_conversation(c.id, incarnation=Incarnation.of(c)) is False


@pytest.mark.parametrize("namesake", NAMESAKES)
async def test_a_delete_never_deletes_a_namesake(store: StateStore, namesake: Namesake) -> None:
    old, bob = await namesake(store)
    bob, msgs = await grow(store, bob, 2)
    for version in (None, old.version, bob.version):
        deleted = await store.delete_conversation(
            old.id, incarnation=Incarnation.of(old), expected_version=version
        )
        assert deleted is False, version
    stored = await store.get_conversation(bob.id, now=utcnow())
    assert stored == bob
    assert await present(store, bob.lineage_id, [m.id for m in msgs]) == {m.id for m in msgs}
    assert await store.delete_conversation(bob.id, incarnation=Incarnation.of(bob)) is True


async def test_a_delete_at_another_version_deletes_nothing(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    grown, msgs = await grow(store, c, 2)
    for given in (Incarnation.of(c), None):
        with pytest.raises(VersionConflict):
            await store.delete_conversation(c.id, incarnation=given, expected_version=c.version)
    assert await store.get_conversation(c.id, now=utcnow()) == grown
    assert await present(store, c.lineage_id, [m.id for m in msgs]) == {m.id for m in msgs}
    deleted = await store.delete_conversation(
        c.id, incarnation=Incarnation.of(c), expected_version=grown.version
    )
    assert deleted is True
    assert await store.get_conversation(c.id, now=utcnow()) is None


@pytest.mark.parametrize("namesake", NAMESAKES)
async def test_a_checkpoint_never_lands_on_a_namesake(
    store: StateStore, namesake: Namesake
) -> None:
    old, bob = await namesake(store)
    with pytest.raises(ConversationNotFound):
        await store.create_checkpoint(checkpoint(old, None), incarnation=Incarnation.of(old))
    assert await store.list_checkpoints(bob.id) == []
    mine = checkpoint(bob, None)
    assert await store.create_checkpoint(mine, incarnation=Incarnation.of(bob)) == mine
    assert await store.list_checkpoints(bob.id) == [mine]


async def test_a_checkpoint_of_a_deleted_incarnation_is_refused(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    assert await store.delete_conversation(c.id)
    with pytest.raises(ConversationNotFound):
        await store.create_checkpoint(checkpoint(c, None), incarnation=Incarnation.of(c))


@pytest.mark.parametrize("namesake", NAMESAKES)
@pytest.mark.parametrize("max_items", [None, 5])
async def test_a_context_item_never_lands_on_a_namesake(
    store: StateStore, namesake: Namesake, max_items: int | None
) -> None:
    old, bob = await namesake(store)
    with pytest.raises(ConversationNotFound):
        await store.save_context_item(
            item_of(old), max_items=max_items, incarnation=Incarnation.of(old)
        )
    assert await store.list_context_items(bob.id) == []
    mine = item_of(bob)
    saved = await store.save_context_item(
        mine, max_items=max_items, incarnation=Incarnation.of(bob)
    )
    assert saved == mine
    assert await store.list_context_items(bob.id) == [mine]
