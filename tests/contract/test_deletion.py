"""Deleting conversations: the lineage reachability rule, per-user erasure, expiry sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta, timezone, tzinfo

from app.domain import Conversation, Message, utcnow
from app.stores.base import StateStore
from tests.contract.builders import (
    append,
    chain,
    checkpoint,
    conversation,
    fork_of,
    grow,
    present,
    tick,
)


async def test_deleting_the_only_conversation_removes_its_messages(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    after, msgs = await grow(store, c, 4)
    # An abandoned branch of its own.
    await store.update_conversation(
        after.model_copy(update={"head_message_id": msgs[1].id, "message_count": 2}),
        expected_version=after.version,
    )
    assert await store.delete_conversation(c.id)
    assert await present(store, c.lineage_id, [m.id for m in msgs]) == set()
    assert await store.list_children(c.lineage_id, None) == []


async def test_fork_keeps_the_shared_ancestry(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    _, a_msgs = await grow(store, a, 4)  # a0 <- a1 <- a2 <- a3
    f = await store.create_conversation(fork_of(a, a_msgs[1].id, message_count=2))
    _, f_msgs = await grow(store, f, 2)  # a1 <- f0 <- f1

    assert await store.delete_conversation(a.id)
    assert await present(store, a.lineage_id, [m.id for m in a_msgs]) == {
        a_msgs[0].id,
        a_msgs[1].id,
    }
    path = await store.get_path(f.lineage_id, f_msgs[-1].id, limit=10)
    assert [m.id for m in path] == [f_msgs[1].id, f_msgs[0].id, a_msgs[1].id, a_msgs[0].id]

    assert await store.delete_conversation(f.id)
    everything = [m.id for m in a_msgs + f_msgs]
    assert await present(store, a.lineage_id, everything) == set()


async def test_deleting_the_fork_keeps_the_source(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    _, a_msgs = await grow(store, a, 3)
    f = await store.create_conversation(fork_of(a, a_msgs[0].id, message_count=1))
    _, f_msgs = await grow(store, f, 2)
    assert await store.delete_conversation(f.id)
    assert await present(store, a.lineage_id, [m.id for m in a_msgs + f_msgs]) == {
        m.id for m in a_msgs
    }


async def test_another_conversations_checkpoint_keeps_its_path(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    _, a_msgs = await grow(store, a, 4)
    b = await store.create_conversation(fork_of(a, a_msgs[0].id, message_count=1))
    await store.create_checkpoint(checkpoint(b, a_msgs[2].id, message_count=3))
    assert await store.delete_conversation(a.id)
    assert await present(store, a.lineage_id, [m.id for m in a_msgs]) == {m.id for m in a_msgs[:3]}


async def test_fork_point_alone_keeps_its_path(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    _, a_msgs = await grow(store, a, 3)
    b = fork_of(a, a_msgs[1].id).model_copy(update={"head_message_id": None})
    await store.create_conversation(b)
    assert await store.delete_conversation(a.id)
    assert await present(store, a.lineage_id, [m.id for m in a_msgs]) == {
        a_msgs[0].id,
        a_msgs[1].id,
    }


async def test_a_remaining_conversations_own_branches_stay(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    _, a_msgs = await grow(store, a, 2)
    b = await store.create_conversation(fork_of(a, a_msgs[0].id, message_count=1))
    b_after, b_msgs = await grow(store, b, 3)
    # b rolls back: its b1, b2 become an abandoned branch that b still owns.
    await store.update_conversation(
        b_after.model_copy(update={"head_message_id": b_msgs[0].id, "message_count": 2}),
        expected_version=b_after.version,
    )
    assert await store.delete_conversation(a.id)
    assert await present(store, a.lineage_id, [m.id for m in a_msgs + b_msgs]) == {
        a_msgs[0].id,
        *(m.id for m in b_msgs),
    }


async def test_messages_of_earlier_deleted_writers_are_reclaimed(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    _, a_msgs = await grow(store, a, 3)  # a0 a1 a2
    b = await store.create_conversation(fork_of(a, a_msgs[2].id, message_count=3))
    _, b_msgs = await grow(store, b, 2)  # a2 <- b0 <- b1
    c = await store.create_conversation(fork_of(b, a_msgs[0].id, message_count=1))
    _, c_msgs = await grow(store, c, 1)  # a0 <- c0

    assert await store.delete_conversation(a.id)  # a0..a2 reachable from b (and c)
    all_ids = [m.id for m in a_msgs + b_msgs + c_msgs]
    assert await present(store, a.lineage_id, all_ids) == set(all_ids)

    assert await store.delete_conversation(b.id)  # a1, a2 (writer a is gone) and b0, b1 go
    assert await present(store, a.lineage_id, all_ids) == {a_msgs[0].id, c_msgs[0].id}

    assert await store.delete_conversation(c.id)
    assert await present(store, a.lineage_id, all_ids) == set()
    assert await store.list_children(a.lineage_id, None) == []


async def test_every_deletion_order_of_a_lineage_leaves_nothing(store: StateStore) -> None:
    for order in ((0, 1, 2), (2, 1, 0), (1, 0, 2), (1, 2, 0)):
        a = await store.create_conversation(conversation())
        _, a_msgs = await grow(store, a, 3)
        b = await store.create_conversation(fork_of(a, a_msgs[1].id, message_count=2))
        _, b_msgs = await grow(store, b, 2)
        c = await store.create_conversation(fork_of(b, b_msgs[0].id, message_count=3))
        _, c_msgs = await grow(store, c, 2)
        await store.create_checkpoint(checkpoint(c, a_msgs[2].id))
        convs = [a, b, c]
        all_ids = [m.id for m in a_msgs + b_msgs + c_msgs]
        for i in order:
            assert await store.delete_conversation(convs[i].id)
        assert await present(store, a.lineage_id, all_ids) == set(), order


async def test_concurrent_deletes_report_one_deletion(store: StateStore) -> None:
    c = await store.create_conversation(conversation(expires_at=utcnow() + timedelta(hours=1)))
    _, msgs = await grow(store, c, 3)
    results = await asyncio.gather(
        *(store.delete_conversation(c.id) for _ in range(5)),
        store.purge_expired(now=utcnow() + timedelta(hours=2)),  # a sweep racing them
    )
    deletes, purged = results[:-1], results[-1]
    assert sum(bool(d) for d in deletes) + purged == 1, results
    assert await present(store, c.lineage_id, [m.id for m in msgs]) == set()


async def test_delete_user_conversations(store: StateStore) -> None:
    mine = [await store.create_conversation(conversation(user_id="erin")) for _ in range(3)]
    expired = await store.create_conversation(
        conversation(user_id="erin", expires_at=utcnow() - timedelta(seconds=1))
    )
    theirs = await store.create_conversation(conversation(user_id="frank"))
    written = []
    for c in [*mine, theirs]:
        _, msgs = await grow(store, c, 2)
        await store.create_checkpoint(checkpoint(c, msgs[0].id))
        written.append(msgs)

    deleted = await store.delete_user_conversations("erin")
    # An expired, not yet reclaimed conversation is erased too (native TTL: already gone).
    late = [] if store.capabilities.native_ttl else [expired]
    # by id, each with its lineage and created_at (what erasing its runs needs)
    assert deleted == sorted((c.id, c.lineage_id, c.created_at) for c in mine + late)
    for c, msgs in zip([*mine, theirs], written, strict=True):
        kept = c.id == theirs.id
        assert (await store.get_conversation(c.id, now=utcnow()) is not None) is kept
        assert bool(await present(store, c.lineage_id, [m.id for m in msgs])) is kept
        assert bool(await store.list_checkpoints(c.id)) is kept
    assert await store.delete_user_conversations("erin") == []
    assert await store.delete_user_conversations("nobody") == []


async def test_delete_user_conversations_keeps_messages_other_users_forked(
    store: StateStore,
) -> None:
    a = await store.create_conversation(conversation(user_id="erin"))
    _, a_msgs = await grow(store, a, 3)
    f = await store.create_conversation(fork_of(a, a_msgs[1].id, user_id="frank"))
    assert await store.delete_user_conversations("erin") == [(a.id, a.lineage_id, a.created_at)]
    assert await present(store, a.lineage_id, [m.id for m in a_msgs]) == {
        a_msgs[0].id,
        a_msgs[1].id,
    }
    assert await store.get_conversation(f.id, now=utcnow()) is not None


async def test_purge_expired(store: StateStore) -> None:
    now = utcnow()
    soon = await store.create_conversation(conversation(expires_at=now + timedelta(seconds=10)))
    later = await store.create_conversation(conversation(expires_at=now + timedelta(hours=1)))
    forever = await store.create_conversation(conversation())
    written = {}
    for c in (soon, later, forever):
        _, msgs = await grow(store, c, 2)
        await store.create_checkpoint(checkpoint(c, msgs[1].id))
        written[c.id] = [m.id for m in msgs]

    assert await store.purge_expired(now=now) == 0
    purged = await store.purge_expired(now=now + timedelta(seconds=10))
    if store.capabilities.native_ttl:
        assert purged == 0  # the backend expires keys itself, on the real clock
        return
    assert purged == 1
    assert await store.get_conversation(soon.id, now=now) is None  # gone, not just hidden
    assert await present(store, soon.lineage_id, written[soon.id]) == set()
    assert await store.list_checkpoints(soon.id) == []
    for c in (later, forever):
        assert await store.get_conversation(c.id, now=now) is not None
        assert await present(store, c.lineage_id, written[c.id]) == set(written[c.id])
        assert len(await store.list_checkpoints(c.id)) == 1
    assert await store.purge_expired(now=now + timedelta(days=1)) == 1
    assert await store.purge_expired(now=now + timedelta(days=1)) == 0


async def test_purge_respects_forks(store: StateStore) -> None:
    now = utcnow()
    a = await store.create_conversation(conversation(expires_at=now + timedelta(seconds=1)))
    _, a_msgs = await grow(store, a, 3)
    await store.create_conversation(fork_of(a, a_msgs[0].id))
    purged = await store.purge_expired(now=now + timedelta(seconds=2))
    if store.capabilities.native_ttl:
        return
    assert purged == 1
    assert await present(store, a.lineage_id, [m.id for m in a_msgs]) == {a_msgs[0].id}


async def test_ping(store: StateStore) -> None:
    await store.ping()


async def test_a_fork_made_again_under_a_deleted_forks_id_keeps_none_of_its_messages(
    store: StateStore,
) -> None:
    """Outside tester T1's follow-up: bob's fork B, deleted, and alice's fork made again
    under B's id share id and lineage. Bob's B messages, kept while bob's fork C of B
    reached them, are not alice's B's (she did not write them: they predate her fork), so
    deleting C deletes them; the messages alice's B wrote stay (its branches). The dates
    carry UTC offsets (an imported document's may): bob's read later, alice's earlier,
    than they are if the offset were dropped."""
    a = await store.create_conversation(conversation(created_at=tick()))
    _, a_msgs = await grow(store, a, 2)
    head = a_msgs[-1].id
    bob_b = await store.create_conversation(
        fork_of(a, head, user_id="bob", message_count=2, created_at=tick())
    )
    _, bob_msgs = await _grow_at(store, bob_b, 2, timezone(timedelta(hours=5)))
    c = await store.create_conversation(
        fork_of(bob_b, bob_msgs[-1].id, user_id="bob", message_count=4, created_at=tick())
    )
    assert await store.delete_conversation(bob_b.id)
    alice_b = await store.create_conversation(
        fork_of(a, head, conversation_id=bob_b.id, message_count=2, created_at=tick())
    )
    alice_after, alice_msgs = await _grow_at(store, alice_b, 2, timezone(timedelta(hours=-5)))
    # alice rolls back: her messages are an abandoned branch she still owns.
    await store.update_conversation(
        alice_after.model_copy(update={"head_message_id": head, "message_count": 2}),
        expected_version=alice_after.version,
    )

    assert await store.delete_conversation(c.id)
    everything = [m.id for m in a_msgs + bob_msgs + alice_msgs]
    assert await present(store, a.lineage_id, everything) == {
        *(m.id for m in a_msgs),
        *(m.id for m in alice_msgs),
    }


async def test_erasing_a_user_deletes_the_messages_of_their_deleted_fork_under_a_reused_id(
    store: StateStore,
) -> None:
    a = await store.create_conversation(conversation(created_at=tick()))
    _, a_msgs = await grow(store, a, 2)
    head = a_msgs[-1].id
    bob_b = await store.create_conversation(
        fork_of(a, head, user_id="bob", message_count=2, created_at=tick())
    )
    _, bob_msgs = await grow(store, bob_b, 2)
    await store.create_conversation(
        fork_of(bob_b, bob_msgs[-1].id, user_id="bob", message_count=4, created_at=tick())
    )
    assert await store.delete_conversation(bob_b.id)
    await store.create_conversation(
        fork_of(a, head, conversation_id=bob_b.id, message_count=2, created_at=tick())
    )

    assert len(await store.delete_user_conversations("bob")) == 1
    assert await present(store, a.lineage_id, [m.id for m in bob_msgs]) == set()
    assert await present(store, a.lineage_id, [m.id for m in a_msgs]) == {m.id for m in a_msgs}


async def test_a_conversation_that_is_not_a_fork_keeps_its_messages_dated_before_it(
    store: StateStore,
) -> None:
    """An import keeps its document's message dates, older than the conversation: a
    conversation that is not a fork wrote every message of its id in its lineage."""
    a = await store.create_conversation(conversation(created_at=tick() + timedelta(days=1)))
    a_after, a_msgs = await grow(store, a, 3)
    await store.update_conversation(
        a_after.model_copy(update={"head_message_id": a_msgs[0].id, "message_count": 1}),
        expected_version=a_after.version,
    )
    f = await store.create_conversation(fork_of(a, a_msgs[0].id, message_count=1))
    _, f_msgs = await grow(store, f, 1)
    assert await store.delete_conversation(f.id)
    assert await present(store, a.lineage_id, [m.id for m in a_msgs + f_msgs]) == {
        m.id for m in a_msgs
    }


async def _grow_at(
    store: StateStore, conv: Conversation, n: int, tz: tzinfo
) -> tuple[Conversation, list[Message]]:
    """`grow`, the messages' dates given in `tz`."""
    (head,) = await store.get_messages(conv.lineage_id, [conv.head_message_id or ""])
    msgs = [
        m.model_copy(update={"created_at": m.created_at.astimezone(tz)})
        for m in chain(conv, head, n)
    ]
    return await append(store, conv, msgs), msgs
