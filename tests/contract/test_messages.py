"""Messages: atomic append with compare-and-set on the head, reads of the tree."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from app.domain import ConversationStatus, Part, Role, ToolCall, Usage, new_id, utcnow
from app.errors import Conflict, ConversationNotFound, HeadConflict
from app.stores.base import StateStore
from tests.contract.builders import append, chain, conversation, fork_of, grow, message, present


async def test_append_moves_head_and_counts(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    msgs = chain(c, None, 3)
    now = utcnow()
    after = await append(store, c, msgs, usage=Usage.of(10, 5), cost_usd=0.25, now=now)
    assert after.head_message_id == msgs[-1].id
    assert after.message_count == 3
    assert after.version == c.version + 1
    assert after.updated_at == now
    assert after.usage.input_tokens == 10 and after.usage.output_tokens == 5
    assert after.usage.total_tokens == 15 and after.usage.cost_usd == pytest.approx(0.25)
    assert after.status == ConversationStatus.idle
    assert after.expires_at is None
    assert after == await store.get_conversation(c.id, now=now)

    more = chain(c, msgs[-1], 2)
    again = await append(store, after, more, usage=Usage.of(1, 2), cost_usd=0.5, now=now)
    assert again.message_count == 5
    assert again.version == c.version + 2
    assert again.usage.model_dump() == {
        "input_tokens": 11,
        "output_tokens": 7,
        "total_tokens": 18,
        "cost_usd": pytest.approx(0.75),
    }
    path = await store.get_path(c.lineage_id, again.head_message_id or "", limit=100)
    assert [m.id for m in path] == [m.id for m in reversed(msgs + more)]


async def test_append_round_trips_message_content(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    rich = message(
        c,
        None,
        role=Role.assistant,
        content="Here ✓",
        parts=[Part(type="text", text="Here ✓")],
        tool_calls=[ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})],
        usage=Usage.of(3, 4),
        cost_usd=0.001,
        finish_reason="tool_calls",
        run_id="run-1",
        metadata={"k": [1, {"x": None}]},
    )
    tool = message(c, rich, role=Role.tool, tool_call_id="call_1", name="get_weather")
    await append(store, c, [rich, tool])
    assert await store.get_messages(c.lineage_id, [rich.id, tool.id]) == [rich, tool]


async def test_status_and_ttl(store: StateStore) -> None:
    c = await store.create_conversation(
        conversation(ttl_seconds=120, expires_at=utcnow() + timedelta(seconds=120))
    )
    now = utcnow() + timedelta(seconds=60)
    after = await append(store, c, chain(c, None, 1), now=now, status=ConversationStatus.running)
    assert after.status == ConversationStatus.running
    assert after.expires_at == now + timedelta(seconds=120)
    stored = await store.get_conversation(c.id, now=now)
    assert stored is not None
    assert stored.expires_at == now + timedelta(seconds=120)
    assert stored.status == ConversationStatus.running
    head = await store.get_messages(c.lineage_id, [after.head_message_id or ""])
    later = await append(store, after, chain(c, head[0], 1), now=now)
    assert later.status == ConversationStatus.running  # None leaves it as stored


async def test_append_without_ttl_keeps_expires_at(store: StateStore) -> None:
    expires = utcnow() + timedelta(hours=5)
    c = await store.create_conversation(conversation(expires_at=expires))
    after = await append(store, c, chain(c, None, 1))
    assert after.expires_at == expires


async def test_head_conflict_stores_nothing(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    first, msgs = await grow(store, c, 2)
    stale = chain(c, None, 3)  # built against the empty conversation
    with pytest.raises(HeadConflict):
        await append(store, c, stale, usage=Usage.of(100, 100), cost_usd=9.0)
    assert await present(store, c.lineage_id, [m.id for m in stale]) == set()
    assert await store.get_conversation(c.id, now=utcnow()) == first
    # A stale non-empty head too.
    wrong = first.model_copy(update={"head_message_id": msgs[0].id})
    with pytest.raises(HeadConflict):
        await append(store, wrong, chain(c, msgs[0], 1))
    assert await store.list_children(c.lineage_id, msgs[0].id) == [msgs[1]]


async def test_append_to_missing_or_expired_is_not_found(store: StateStore) -> None:
    ghost = conversation()
    with pytest.raises(ConversationNotFound):
        await append(store, ghost, chain(ghost, None, 1))
    c = await store.create_conversation(conversation(expires_at=utcnow() + timedelta(seconds=5)))
    late = utcnow() + timedelta(seconds=6)
    with pytest.raises(ConversationNotFound):
        await append(store, c, chain(c, None, 1), now=late)
    await store.delete_conversation(c.id)
    with pytest.raises(ConversationNotFound):
        await append(store, c, chain(c, None, 1))


async def test_append_does_not_overwrite_a_concurrent_patch(store: StateStore) -> None:
    c = await store.create_conversation(conversation(metadata={"a": 1}))
    patched = await store.update_conversation(
        c.model_copy(update={"metadata": {"a": 2, "b": True}, "variables": {"v": 1}}),
        expected_version=c.version,
    )
    # The turn started before the PATCH and still holds the old object.
    after = await append(store, c, chain(c, None, 2))
    assert after.metadata == {"a": 2, "b": True}
    assert after.variables == {"v": 1}
    assert after.version == patched.version + 1


async def test_duplicate_message_id_is_rejected_atomically(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    after, msgs = await grow(store, c, 1)
    dup = message(c, msgs[0], message_id=msgs[0].id)
    with pytest.raises(Conflict):
        await append(store, after, [dup])
    assert await store.get_conversation(c.id, now=utcnow()) == after


async def test_append_nothing_is_a_programming_error(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    with pytest.raises(ValueError):
        await append(store, c, [])


async def test_concurrent_appends_on_one_head_exactly_one_wins(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    base, _ = await grow(store, c, 1)
    (head,) = await store.get_messages(c.lineage_id, [base.head_message_id or ""])
    attempts = [chain(c, head, 2) for _ in range(20)]
    results = await asyncio.gather(
        *(append(store, base, a, usage=Usage.of(1, 1), cost_usd=1.0) for a in attempts),
        return_exceptions=True,
    )
    won = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1, results
    assert all(isinstance(e, HeadConflict) for e in lost), lost
    final = await store.get_conversation(c.id, now=utcnow())
    assert final is not None
    assert final.head_message_id == attempts[won[0]][-1].id
    assert final.version == base.version + 1
    assert final.usage.total_tokens == 2 and final.usage.cost_usd == pytest.approx(1.0)
    children = await store.list_children(c.lineage_id, head.id)
    assert [m.id for m in children] == [attempts[won[0]][0].id]


async def test_get_messages_in_the_order_asked(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    _, msgs = await grow(store, c, 4)
    asked = [msgs[2].id, "unknown", msgs[0].id, msgs[3].id]
    got = await store.get_messages(c.lineage_id, asked)
    assert [m.id for m in got] == [msgs[2].id, msgs[0].id, msgs[3].id]
    assert await store.get_messages(c.lineage_id, []) == []
    assert await store.get_messages("no-such-lineage", [msgs[0].id]) == []


async def test_get_messages_handles_many_ids(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    _, msgs = await grow(store, c, 1200)
    asked = [m.id for m in reversed(msgs)]
    assert [m.id for m in await store.get_messages(c.lineage_id, asked)] == asked


async def test_lineages_are_isolated(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    b = await store.create_conversation(conversation())
    _, msgs_a = await grow(store, a, 2)
    assert await store.get_messages(b.lineage_id, [m.id for m in msgs_a]) == []
    assert await store.get_path(b.lineage_id, msgs_a[-1].id, limit=10) == []
    assert await store.list_children(b.lineage_id, None) == []
    assert await store.list_children(b.lineage_id, msgs_a[0].id) == []
    # The same message id may exist in two lineages (e.g. an imported copy).
    twin = message(b, None, message_id=msgs_a[0].id, content="twin")
    await append(store, b, [twin])
    (got_b,) = await store.get_messages(b.lineage_id, [twin.id])
    (got_a,) = await store.get_messages(a.lineage_id, [twin.id])
    assert got_b.content == "twin" and got_a == msgs_a[0]


async def test_get_path_is_newest_first_and_bounded(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    _, msgs = await grow(store, c, 7)
    newest_first = [m.id for m in reversed(msgs)]
    path = await store.get_path(c.lineage_id, msgs[-1].id, limit=3)
    assert [m.id for m in path] == newest_first[:3]
    path = await store.get_path(c.lineage_id, msgs[-1].id, limit=100)
    assert [m.id for m in path] == newest_first
    assert path[0] == msgs[-1]
    mid = await store.get_path(c.lineage_id, msgs[3].id, limit=100)
    assert [m.id for m in mid] == [m.id for m in reversed(msgs[:4])]
    assert [m.id for m in await store.get_path(c.lineage_id, msgs[0].id, limit=1)] == [msgs[0].id]
    assert await store.get_path(c.lineage_id, "unknown", limit=5) == []
    assert await store.get_path(c.lineage_id, msgs[-1].id, limit=0) == []


async def test_branches_and_children(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    after, msgs = await grow(store, c, 3)  # m0 <- m1 <- m2
    # Regenerate: a sibling of m2 under m1, appended with the head still at m2.
    sibling = message(c, msgs[1], role=Role.assistant)
    regen = await append(store, after, [sibling])
    assert regen.head_message_id == sibling.id and regen.message_count == 3
    # Edit the first message: a second root.
    root2 = message(c, None)
    edited = await append(store, regen, [root2])
    assert edited.message_count == 1

    assert [m.id for m in await store.list_children(c.lineage_id, msgs[1].id)] == [
        msgs[2].id,
        sibling.id,
    ]
    assert [m.id for m in await store.list_children(c.lineage_id, None)] == [msgs[0].id, root2.id]
    assert await store.list_children(c.lineage_id, msgs[2].id) == []
    assert await store.list_children(c.lineage_id, "unknown") == []
    path = await store.get_path(c.lineage_id, sibling.id, limit=10)
    assert [m.id for m in path] == [sibling.id, msgs[1].id, msgs[0].id]


async def test_fork_shares_ancestry(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    _, msgs = await grow(store, a, 3)
    f = await store.create_conversation(fork_of(a, msgs[1].id, message_count=2))
    f_after, f_msgs = await grow(store, f, 2)
    path = await store.get_path(a.lineage_id, f_after.head_message_id or "", limit=10)
    assert [m.id for m in path] == [f_msgs[1].id, f_msgs[0].id, msgs[1].id, msgs[0].id]
    assert f_after.message_count == 4
    assert {m.conversation_id for m in path} == {a.id, f.id}


async def test_children_of_many_parents(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    after, msgs = await grow(store, c, 3)  # m0 <- m1 <- m2
    a = message(c, msgs[0], role=Role.assistant)
    after = await append(store, after, [a])  # a second child of m0, newer than m1
    b = message(c, msgs[0], role=Role.assistant)
    await append(store, after, [b])
    kids = await store.children_of(c.lineage_id, [msgs[0].id, msgs[2].id, msgs[1].id, "nope"])
    assert [m.id for m in kids[msgs[0].id]] == [msgs[1].id, a.id, b.id]  # oldest first
    assert [m.id for m in kids[msgs[1].id]] == [msgs[2].id]
    assert kids.get(msgs[2].id, []) == [] and kids.get("nope", []) == []
    assert await store.children_of("other-lineage", [msgs[0].id]) == {}
    assert await store.children_of(c.lineage_id, []) == {}


@pytest.mark.parametrize("first_turn", [True, False])
async def test_append_never_lands_in_a_namesake_of_another_lineage(
    store: StateStore, first_turn: bool
) -> None:
    """Conversation ids are reusable: a turn planned on a deleted conversation commits with
    that conversation's copy, and the compare-and-set must not match a conversation created
    under the id since (another lineage). A first turn's "no head yet" matched the
    namesake's empty head and its messages landed in the namesake (outside tester T5)."""
    old = await store.create_conversation(conversation(lineage_id=f"lin-{new_id()}"))
    history = chain(old, None, 2)
    if not first_turn:
        old = await append(store, old, history)
    assert await store.delete_conversation(old.id)
    namesake = await store.create_conversation(
        conversation(old.id, user_id="bob", lineage_id=f"lin-{new_id()}")
    )
    if not first_turn:  # the namesake's head is the old head's id: an equal CAS value
        namesake = await append(
            store, namesake, [message(namesake, None, message_id=old.head_message_id)]
        )
    with pytest.raises(ConversationNotFound):
        await append(store, old, history if first_turn else chain(old, history[-1], 1))
    stored = await store.get_conversation(old.id, now=utcnow())
    assert stored is not None and stored.lineage_id == namesake.lineage_id
    assert stored.message_count == namesake.message_count
    assert stored.head_message_id == namesake.head_message_id


@pytest.mark.parametrize("first_turn", [True, False])
async def test_append_never_lands_in_a_fork_made_again_under_a_deleted_forks_id(
    store: StateStore, first_turn: bool
) -> None:
    """A fork keeps its source's lineage: a fork deleted and forked again under its id from
    the same message has the deleted one's id, lineage and head, so a turn planned on the
    deleted one passed the compare-and-set of (id, lineage, head) and committed into the
    new one (outside tester T1). Only the incarnation (`created_at`) tells them apart."""
    source = await store.create_conversation(conversation())
    source = await append(store, source, chain(source, None, 2))
    head = (await store.get_messages(source.lineage_id, [source.head_message_id or ""]))[0]
    at = None if first_turn else head.id
    fork_id = f"fork-{new_id()}"
    forked = conversation(
        fork_id,
        lineage_id=source.lineage_id,
        head_message_id=at,
        message_count=0 if first_turn else 2,
    )
    old = await store.create_conversation(forked)
    assert await store.delete_conversation(old.id)
    again = await store.create_conversation(
        forked.model_copy(
            update={"user_id": "bob", "created_at": old.created_at + timedelta(milliseconds=1)}
        )
    )
    assert (again.id, again.lineage_id, again.head_message_id) == (old.id, old.lineage_id, at)
    with pytest.raises(ConversationNotFound):
        await append(store, old, chain(old, None if first_turn else head, 2))
    stored = await store.get_conversation(fork_id, now=utcnow())
    assert stored is not None and stored.user_id == "bob"
    assert (stored.head_message_id, stored.version) == (at, again.version)
    kids = await store.list_children(source.lineage_id, at)
    assert kids and all(m.conversation_id == source.id for m in kids) if first_turn else not kids
