"""Context items: stored per conversation, listed oldest first, deleted and expired with
their conversation (never with another conversation of the lineage)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from app.domain import Conversation, new_id, utcnow
from app.domain.context_item import ContextItem
from app.errors import Conflict, ContextItemsFull, ConversationNotFound
from app.stores.base import StateStore
from tests.contract.builders import conversation, fork_of, grow, tick


def item_of(conv: Conversation, **fields: object) -> ContextItem:
    return ContextItem.model_validate(
        {
            "id": new_id(),
            "conversation_id": conv.id,
            "content": "# Notes\nThe launch code is 7.",
            "source": "notes.md",
            "pinned": False,
            "metadata": {"k": "v"},
            "tokens": 12,
            "created_at": tick(),
            **fields,
        }
    )


async def test_context_items_are_saved_listed_oldest_first_and_deleted(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    first = item_of(c, pinned=True)
    second = item_of(c, media_id="m-1", source=None)
    assert await store.save_context_item(first) == first
    assert await store.save_context_item(second) == second
    assert await store.list_context_items(c.id) == [first, second]
    assert await store.list_context_items("no-such-conversation") == []

    assert await store.delete_context_item(c.id, first.id) is True
    assert await store.delete_context_item(c.id, first.id) is False
    assert await store.delete_context_item("no-such-conversation", second.id) is False
    assert await store.list_context_items(c.id) == [second]


async def test_a_context_item_needs_its_conversation(store: StateStore) -> None:
    ghost = conversation()
    with pytest.raises(ConversationNotFound):
        await store.save_context_item(item_of(ghost))
    assert await store.list_context_items(ghost.id) == []


async def test_a_context_item_id_is_stored_once(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    item = item_of(c)
    await store.save_context_item(item)
    with pytest.raises(Conflict):
        await store.save_context_item(item.model_copy(update={"content": "other"}))
    assert await store.list_context_items(c.id) == [item]


async def test_concurrent_capped_saves_never_pass_the_cap(store: StateStore) -> None:
    """20 saves at once to a conversation holding max-2 items: exactly 2 are stored, the
    rest refused with `ContextItemsFull`; the cap counts this conversation's items only."""
    c = await store.create_conversation(conversation())
    _, msgs = await grow(store, c, 2)
    other = await store.create_conversation(fork_of(c, msgs[1].id, message_count=2))
    for _ in range(4):
        await store.save_context_item(item_of(other), max_items=6)
    held = [item_of(c) for _ in range(4)]
    for item in held:
        await store.save_context_item(item, max_items=6)
    outcomes = await asyncio.gather(
        *(store.save_context_item(item_of(c), max_items=6) for _ in range(20)),
        return_exceptions=True,
    )
    saved = [o for o in outcomes if isinstance(o, ContextItem)]
    refused = [o for o in outcomes if isinstance(o, ContextItemsFull)]
    assert (len(saved), len(refused)) == (2, 18), outcomes
    assert await store.list_context_items(c.id) == sorted(
        [*held, *saved], key=lambda i: (i.created_at, i.id)
    )
    with pytest.raises(ContextItemsFull):
        await store.save_context_item(item_of(c), max_items=6)
    await store.save_context_item(item_of(c))  # no cap given: none applies (forks, import)
    assert len(await store.list_context_items(c.id)) == 7


async def test_delete_context_items_empties_one_conversation_of_the_lineage(
    store: StateStore,
) -> None:
    c = await store.create_conversation(conversation())
    _, msgs = await grow(store, c, 2)
    f = await store.create_conversation(fork_of(c, msgs[1].id, message_count=2))
    for _ in range(3):
        await store.save_context_item(item_of(c))
    kept = item_of(f)
    await store.save_context_item(kept)
    assert await store.delete_context_items(c.id) == 3
    assert await store.list_context_items(c.id) == []
    assert await store.list_context_items(f.id) == [kept]
    assert await store.delete_context_items(c.id) == 0
    assert await store.delete_context_items("no-such-conversation") == 0
    again = item_of(c)
    await store.save_context_item(again, max_items=1)  # the cap counts what is left: none
    assert await store.list_context_items(c.id) == [again]


async def test_items_are_per_conversation_within_a_lineage(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    _, msgs = await grow(store, a, 2)
    f = await store.create_conversation(fork_of(a, msgs[1].id, message_count=2))
    a_item, f_item = item_of(a), item_of(f)
    await store.save_context_item(a_item)
    await store.save_context_item(f_item)
    assert await store.list_context_items(a.id) == [a_item]
    assert await store.list_context_items(f.id) == [f_item]
    assert await store.delete_context_item(f.id, a_item.id) is False

    assert await store.delete_conversation(a.id)  # the fork keeps the lineage alive
    assert await store.list_context_items(f.id) == [f_item]
    assert await store.list_context_items(a.id) == []
    assert await store.delete_conversation(f.id)
    assert await store.list_context_items(f.id) == []


async def test_deleting_the_conversation_deletes_its_items(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    await grow(store, c, 2)
    await store.save_context_item(item_of(c))
    await store.save_context_item(item_of(c, pinned=True))
    assert await store.delete_conversation(c.id)
    assert await store.list_context_items(c.id) == []
    # the id reused: a new conversation starts without the old items
    again = await store.create_conversation(conversation(c.id))
    assert await store.list_context_items(again.id) == []


async def test_context_items_expire_with_their_conversation(store: StateStore) -> None:
    now = utcnow()
    c = await store.create_conversation(conversation(expires_at=now + timedelta(seconds=1)))
    await store.save_context_item(item_of(c))
    keeper = await store.create_conversation(conversation())
    kept = item_of(keeper)
    await store.save_context_item(kept)
    if store.capabilities.native_ttl:
        await asyncio.sleep(1.3)  # the backend expires keys itself, on the real clock
    else:
        assert await store.purge_expired(now=now + timedelta(seconds=2)) == 1
    assert await store.list_context_items(c.id) == []
    assert await store.list_context_items(keeper.id) == [kept]


async def test_context_items_live_as_long_as_a_ttl_extended_by_update(store: StateStore) -> None:
    now = utcnow()
    c = await store.create_conversation(conversation(expires_at=now + timedelta(seconds=1)))
    item = item_of(c)
    await store.save_context_item(item)
    c = await store.update_conversation(
        c.model_copy(update={"expires_at": now + timedelta(seconds=60)}),
        expected_version=c.version,
    )
    if store.capabilities.native_ttl:
        await asyncio.sleep(1.3)  # past the first expiry, on the real clock
    else:
        assert await store.purge_expired(now=now + timedelta(seconds=2)) == 0
    assert await store.list_context_items(c.id) == [item]
