"""Summaries: stored per lineage, pointing at the message they cover, and deleted with it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from app.domain import Message, new_id, utcnow
from app.domain.summary import Summary
from app.errors import Conflict, MessageNotFound
from app.stores.base import StateStore
from tests.contract.builders import conversation, fork_of, grow, tick


def summary_of(covered: Message, lineage_id: str, **fields: object) -> Summary:
    return Summary.model_validate(
        {
            "id": new_id(),
            "lineage_id": lineage_id,
            "conversation_id": covered.conversation_id,
            "covers_message_id": covered.id,
            "covers_depth": covered.depth,
            "text": f"summary up to {covered.id}",
            "tokens": 9,
            "provider": "mock",
            "model": "mock-echo",
            "created_at": tick(),
            **fields,
        }
    )


async def test_summaries_are_saved_listed_oldest_first_and_deleted(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    _, msgs = await grow(store, c, 4)
    first = summary_of(msgs[1], c.lineage_id)
    second = summary_of(msgs[3], c.lineage_id, previous_id=first.id)
    assert await store.save_summary(first) == first
    assert await store.save_summary(second) == second
    assert await store.list_summaries(c.lineage_id) == [first, second]
    assert await store.list_summaries("another-lineage") == []

    assert await store.delete_summary(c.lineage_id, first.id) is True
    assert await store.delete_summary(c.lineage_id, first.id) is False
    assert await store.delete_summary("another-lineage", second.id) is False
    assert await store.list_summaries(c.lineage_id) == [second]


async def test_a_summary_needs_its_covered_message_in_the_lineage(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    b = await store.create_conversation(conversation())
    _, a_msgs = await grow(store, a, 2)
    with pytest.raises(MessageNotFound):
        await store.save_summary(summary_of(a_msgs[1], b.lineage_id))  # another lineage's
    missing = a_msgs[1].model_copy(update={"id": "no-such-message"})
    with pytest.raises(MessageNotFound):
        await store.save_summary(summary_of(missing, a.lineage_id))
    assert await store.list_summaries(a.lineage_id) == []
    assert await store.list_summaries(b.lineage_id) == []


async def test_a_summary_id_is_stored_once(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    _, msgs = await grow(store, c, 2)
    s = summary_of(msgs[1], c.lineage_id)
    await store.save_summary(s)
    with pytest.raises(Conflict):
        await store.save_summary(s.model_copy(update={"text": "another text"}))
    assert await store.list_summaries(c.lineage_id) == [s]


async def test_deleting_the_lineage_deletes_its_summaries(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    _, msgs = await grow(store, c, 4)
    await store.save_summary(summary_of(msgs[1], c.lineage_id))
    await store.save_summary(summary_of(msgs[3], c.lineage_id))
    assert await store.delete_conversation(c.id)
    assert await store.list_summaries(c.lineage_id) == []
    # the id reused: a new conversation starts without the old summaries
    again = await store.create_conversation(conversation(c.id))
    await grow(store, again, 2)
    assert await store.list_summaries(c.lineage_id) == []


async def test_reclaimed_messages_take_their_summaries_shared_ones_stay(
    store: StateStore,
) -> None:
    a = await store.create_conversation(conversation())
    _, a_msgs = await grow(store, a, 4)  # a0 <- a1 <- a2 <- a3
    f = await store.create_conversation(fork_of(a, a_msgs[1].id, message_count=2))
    _, f_msgs = await grow(store, f, 2)  # a1 <- f0 <- f1
    shared = summary_of(a_msgs[1], a.lineage_id)
    only_a = summary_of(a_msgs[3], a.lineage_id)
    only_f = summary_of(f_msgs[1], a.lineage_id, conversation_id=f.id)
    for s in (shared, only_a, only_f):
        await store.save_summary(s)

    assert await store.delete_conversation(a.id)  # a2, a3 go; a0, a1 are f's ancestry
    assert await store.list_summaries(a.lineage_id) == [shared, only_f]
    assert await store.delete_conversation(f.id)
    assert await store.list_summaries(a.lineage_id) == []


async def test_summaries_expire_with_their_lineage(store: StateStore) -> None:
    now = utcnow()
    c = await store.create_conversation(conversation(expires_at=now + timedelta(seconds=1)))
    _, msgs = await grow(store, c, 2)
    await store.save_summary(summary_of(msgs[1], c.lineage_id))
    keeper = await store.create_conversation(conversation())
    _, kept = await grow(store, keeper, 2)
    kept_summary = summary_of(kept[1], keeper.lineage_id)
    await store.save_summary(kept_summary)
    if store.capabilities.native_ttl:
        await asyncio.sleep(1.3)  # the backend expires keys itself, on the real clock
    else:
        assert await store.purge_expired(now=now + timedelta(seconds=2)) == 1
    assert await store.list_summaries(c.lineage_id) == []
    assert await store.list_summaries(keeper.lineage_id) == [kept_summary]
