"""Conversations: create / get / update (CAS) / touch / delete."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from app.domain import ContextPolicy, ConversationStatus, new_id, utcnow
from app.errors import ConversationExists, ConversationNotFound, VersionConflict
from app.stores.base import StateStore
from tests.contract.builders import checkpoint, conversation, grow, present


async def test_create_then_get_round_trips_every_field(store: StateStore) -> None:
    c = conversation(
        "user:alice:conv:42",
        variables={"name": "Ada", "n": 3},
        system_prompt="You are helpful.",
        metadata={"topic": "billing", "nested": {"a": [1, 2]}, "emoji": "héllo ✓"},
        context_policy=ContextPolicy(max_input_tokens=4000, strategy="sliding_window"),
        ttl_seconds=3600,
        expires_at=utcnow() + timedelta(hours=1),
        status=ConversationStatus.requires_action,
        version=1,
    )
    created = await store.create_conversation(c)
    assert created == c
    got = await store.get_conversation(c.id, now=utcnow())
    assert got == c


async def test_create_keeps_the_given_version(store: StateStore) -> None:
    c = await store.create_conversation(conversation(version=7))
    got = await store.get_conversation(c.id, now=utcnow())
    assert got is not None and got.version == 7


async def test_get_unknown_is_none(store: StateStore) -> None:
    assert await store.get_conversation("nope", now=utcnow()) is None


async def test_create_existing_live_conflicts(store: StateStore) -> None:
    c = await store.create_conversation(conversation(expires_at=utcnow() + timedelta(hours=1)))
    with pytest.raises(ConversationExists):
        await store.create_conversation(conversation(c.id, user_id="bob"))
    got = await store.get_conversation(c.id, now=utcnow())
    assert got is not None and got.user_id == "alice"


async def test_expired_conversation_is_invisible_from_the_instant_it_expires(
    store: StateStore,
) -> None:
    now = utcnow()
    c = await store.create_conversation(conversation(expires_at=now + timedelta(seconds=30)))
    assert await store.get_conversation(c.id, now=now) is not None
    assert await store.get_conversation(c.id, now=now + timedelta(seconds=30)) is None
    assert await store.get_conversation(c.id, now=now + timedelta(seconds=31)) is None


async def test_create_over_expired_replaces_it_and_reclaims_its_data(store: StateStore) -> None:
    old = await store.create_conversation(conversation(expires_at=utcnow() + timedelta(hours=1)))
    old_state, msgs = await grow(store, old, 3)
    await store.create_checkpoint(checkpoint(old_state, msgs[1].id))
    await store.touch_conversation(old.id, utcnow() - timedelta(seconds=1))

    new = conversation(old.id, user_id="bob", metadata={"fresh": True})
    assert await store.create_conversation(new) == new
    assert await store.get_conversation(old.id, now=utcnow()) == new
    assert await present(store, old.lineage_id, [m.id for m in msgs]) == set()
    assert await store.list_checkpoints(old.id) == []


@pytest.mark.parametrize("expired_first", [False, True])
async def test_concurrent_creates_of_one_id_exactly_one_wins(
    store: StateStore, expired_first: bool
) -> None:
    cid = conversation().id
    if expired_first:
        await store.create_conversation(conversation(cid, expires_at=utcnow() - timedelta(1)))
    attempts = [conversation(cid, user_id=f"user{i}") for i in range(8)]
    results = await asyncio.gather(
        *(store.create_conversation(c) for c in attempts), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(e, ConversationExists) for e in losers), losers
    got = await store.get_conversation(cid, now=utcnow())
    assert got == winners[0]


async def test_update_is_compare_and_set_on_version(store: StateStore) -> None:
    c = await store.create_conversation(conversation(metadata={"a": 1}))
    changed = c.model_copy(update={"metadata": {"b": 2}, "variables": {"x": "y"}})
    stored = await store.update_conversation(changed, expected_version=1)
    assert stored.version == 2
    assert stored.metadata == {"b": 2} and stored.variables == {"x": "y"}
    assert await store.get_conversation(c.id, now=utcnow()) == stored

    with pytest.raises(VersionConflict):
        await store.update_conversation(changed, expected_version=1)
    again = await store.update_conversation(stored, expected_version=2)
    assert again.version == 3


async def test_concurrent_updates_of_one_version_exactly_one_wins(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    edits = [c.model_copy(update={"metadata": {"writer": i}}) for i in range(10)]
    results = await asyncio.gather(
        *(store.update_conversation(e, expected_version=c.version) for e in edits),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, VersionConflict) for r in results if isinstance(r, BaseException))
    assert await store.get_conversation(c.id, now=utcnow()) == winners[0]


async def test_update_missing_is_not_found(store: StateStore) -> None:
    with pytest.raises(ConversationNotFound):
        await store.update_conversation(conversation(), expected_version=1)


async def test_update_after_append_needs_the_new_version(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    after, _ = await grow(store, c, 2)
    assert after.version == 2
    with pytest.raises(VersionConflict):
        await store.update_conversation(c, expected_version=1)
    renamed = after.model_copy(update={"metadata": {"k": "v"}})
    assert (await store.update_conversation(renamed, expected_version=2)).version == 3


async def test_touch_moves_only_expires_at(store: StateStore) -> None:
    c = await store.create_conversation(conversation(expires_at=utcnow() + timedelta(minutes=1)))
    later = utcnow() + timedelta(days=2)
    await store.touch_conversation(c.id, later)
    got = await store.get_conversation(c.id, now=utcnow())
    assert got == c.model_copy(update={"expires_at": later})
    await store.touch_conversation("missing", later)  # ignored


async def test_touch_into_the_past_expires(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    await store.touch_conversation(c.id, utcnow() - timedelta(seconds=1))
    assert await store.get_conversation(c.id, now=utcnow()) is None


async def test_delete_reports_whether_it_existed(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    assert await store.delete_conversation(c.id) is True
    assert await store.get_conversation(c.id, now=utcnow()) is None
    assert await store.delete_conversation(c.id) is False
    assert await store.delete_conversation("never-was") is False


async def test_callers_cannot_mutate_stored_state(store: StateStore) -> None:
    c = conversation(metadata={"a": {"b": 1}})
    created = await store.create_conversation(c)
    c.metadata["a"]["b"] = 2
    created.metadata["a"]["b"] = 3
    got = await store.get_conversation(c.id, now=utcnow())
    assert got is not None and got.metadata == {"a": {"b": 1}}
    got.metadata["x"] = 1
    again = await store.get_conversation(c.id, now=utcnow())
    assert again is not None and again.metadata == {"a": {"b": 1}}


async def test_an_update_never_lands_in_a_namesake_of_another_lineage(store: StateStore) -> None:
    """Ids are reusable: an update from a copy of a deleted conversation must not replace a
    conversation created under its id since (it took over bob's row with alice's user and
    lineage on memory, SQLite and PostgreSQL; review F12)."""
    old = await store.create_conversation(conversation(lineage_id=f"lin-{new_id()}"))
    assert await store.delete_conversation(old.id)
    namesake = await store.create_conversation(
        conversation(old.id, user_id="bob", lineage_id=f"lin-{new_id()}")
    )
    assert namesake.version == old.version  # so only the lineage tells them apart
    with pytest.raises(ConversationNotFound):
        await store.update_conversation(
            old.model_copy(update={"metadata": {"k": "v"}}), expected_version=old.version
        )
    stored = await store.get_conversation(old.id, now=utcnow())
    assert stored is not None and stored.user_id == "bob" and stored.metadata == {}
    assert stored.lineage_id == namesake.lineage_id


async def test_an_update_never_lands_in_a_fork_made_again_under_a_deleted_forks_id(
    store: StateStore,
) -> None:
    """A fork forked again under a deleted fork's id has its id, lineage and version: only
    the incarnation (`created_at`) tells an update from the deleted one's copy apart
    (outside tester T1)."""
    source = await store.create_conversation(conversation())
    forked = conversation(f"fork-{new_id()}", lineage_id=source.lineage_id)
    old = await store.create_conversation(forked)
    assert await store.delete_conversation(old.id)
    later = old.created_at + timedelta(milliseconds=1)
    again = await store.create_conversation(
        forked.model_copy(update={"user_id": "bob", "created_at": later})
    )
    assert (again.lineage_id, again.version) == (old.lineage_id, old.version)
    with pytest.raises(ConversationNotFound):
        await store.update_conversation(
            old.model_copy(update={"metadata": {"k": "v"}}), expected_version=old.version
        )
    stored = await store.get_conversation(old.id, now=utcnow())
    assert stored is not None and stored.user_id == "bob" and stored.metadata == {}
    assert stored.created_at == later
