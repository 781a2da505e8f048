"""Media records and the message references to them (StateStore contract, DESIGN §13)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest

from app.domain import MediaRef, Message, Part, new_id, utcnow
from app.domain.media import MediaRecord
from app.errors import MediaNotFound
from app.stores.base import StateStore
from tests.contract.builders import append, conversation, fork_of, grow, message, present


def record(user_id: str = "alice", data: bytes | None = None, **fields: object) -> MediaRecord:
    data = data if data is not None else new_id().encode()
    values: dict[str, object] = {
        "id": f"med_{new_id()}",
        "user_id": user_id,
        "sha256": hashlib.sha256(data).hexdigest(),
        "mime_type": "image/png",
        "kind": "image",
        "size_bytes": len(data),
        "width": 2,
        "height": 3,
        "created_at": utcnow(),
    }
    values.update(fields)
    return MediaRecord.model_validate(values)


def with_media(msg: Message, *records: MediaRecord) -> Message:
    parts = [Part(type="text", text=msg.content)]
    parts += [
        Part(
            type="image",
            media=MediaRef(media_id=r.id, mime_type=r.mime_type, sha256=r.sha256),
        )
        for r in records
    ]
    return msg.model_copy(update={"parts": parts})


async def test_save_and_get(store: StateStore) -> None:
    r = record(filename="cat.png")
    assert await store.save_media(r) == r
    assert await store.get_media(r.id) == r
    assert await store.get_media("med_unknown") is None
    assert await store.user_media_ids("alice") == [r.id]
    assert await store.user_media_ids("bob") == []


async def test_one_record_per_user_and_bytes(store: StateStore) -> None:
    first = await store.save_media(record(data=b"same bytes"))
    again = await store.save_media(record(data=b"same bytes"))
    assert again == first
    bobs = await store.save_media(record("bob", data=b"same bytes"))
    assert bobs.id != first.id and bobs.sha256 == first.sha256
    assert await store.user_media_ids("alice") == [first.id]
    assert await store.user_media_ids("bob") == [bobs.id]


async def test_media_in_use_follows_records(store: StateStore) -> None:
    r = await store.save_media(record(data=b"bytes"))
    assert await store.media_in_use(r.sha256)
    assert not await store.media_in_use(hashlib.sha256(b"other").hexdigest())
    assert await store.collect_media([r.id], force=True) == [r]
    assert not await store.media_in_use(r.sha256)


async def test_append_refuses_unknown_media_and_stores_nothing(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    ghost = record()  # never saved
    msg = with_media(message(c, None), ghost)
    with pytest.raises(MediaNotFound):
        await append(store, c, [msg])
    assert await present(store, c.lineage_id, [msg.id]) == set()
    stored = await store.get_conversation(c.id, now=utcnow())
    assert stored is not None and stored.head_message_id is None


async def test_a_referenced_record_is_never_collected(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    r = await store.save_media(record())
    await append(store, c, [with_media(message(c, None), r)])
    await store.mark_media_attached([r.id], retain=False)
    assert await store.lineage_media_ids(c.lineage_id) == [r.id]
    assert await store.collect_media([r.id]) == []
    assert await store.collect_media([r.id], force=True) == []  # even for erasure
    assert await store.get_media(r.id) is not None


async def test_flags_decide_what_an_unreferenced_record_does(store: StateStore) -> None:
    upload = await store.save_media(record())  # never attached: an upload awaiting use
    kept = await store.save_media(record())
    loose = await store.save_media(record())
    await store.mark_media_attached([kept.id], retain=True)
    await store.mark_media_attached([loose.id], retain=False)
    await store.mark_media_attached([kept.id], retain=False)  # retain is never cleared
    await store.mark_media_attached(["med_unknown"], retain=False)
    got = await store.get_media(kept.id)
    assert got is not None and got.attached and got.retain
    assert await store.collectable_media_ids(limit=10) == [loose.id]
    deleted = await store.collect_media([upload.id, kept.id, loose.id])
    assert [d.id for d in deleted] == [loose.id]
    assert await store.get_media(loose.id) is None
    assert await store.get_media(upload.id) is not None
    assert await store.collectable_media_ids(limit=10) == []


async def test_deleting_a_conversation_drops_its_references(store: StateStore) -> None:
    c = await store.create_conversation(conversation())
    r = await store.save_media(record())
    c = await append(store, c, [with_media(message(c, None), r, r)])  # twice in one message
    await store.mark_media_attached([r.id], retain=False)
    assert await store.delete_conversation(c.id)
    assert await store.lineage_media_ids(c.lineage_id) == []
    assert [d.id for d in await store.collect_media([r.id])] == [r.id]


async def test_references_are_fork_aware(store: StateStore) -> None:
    """The image is in the shared ancestry: deleting either fork keeps the reference,
    deleting both drops it."""
    a = await store.create_conversation(conversation())
    r = await store.save_media(record())
    first = with_media(message(a, None), r)
    a = await append(store, a, [first])
    await store.mark_media_attached([r.id], retain=False)
    a, _ = await grow(store, a, 2)
    f = await store.create_conversation(fork_of(a, first.id, message_count=1))
    await grow(store, f, 2)

    assert await store.delete_conversation(a.id)
    assert await store.collect_media([r.id]) == []
    assert await store.lineage_media_ids(a.lineage_id) == [r.id]
    assert await store.delete_conversation(f.id)
    assert [d.id for d in await store.collect_media([r.id])] == [r.id]


async def test_a_branch_reclaimed_alone_drops_only_its_references(store: StateStore) -> None:
    a = await store.create_conversation(conversation())
    a, base = await grow(store, a, 2)
    f = await store.create_conversation(fork_of(a, base[-1].id, message_count=2))
    only_in_fork = await store.save_media(record())
    shared = await store.save_media(record())
    f = await append(store, f, [with_media(message(f, base[-1]), only_in_fork, shared)])
    head = await store.get_messages(a.lineage_id, [a.head_message_id or ""])
    await append(store, a, [with_media(message(a, head[0]), shared)])
    await store.mark_media_attached([only_in_fork.id, shared.id], retain=False)

    assert await store.delete_conversation(f.id)
    assert await store.lineage_media_ids(a.lineage_id) == [shared.id]
    assert [d.id for d in await store.collect_media([only_in_fork.id, shared.id])] == [
        only_in_fork.id
    ]


async def test_references_across_lineages_and_users(store: StateStore) -> None:
    """Two users' records of the same bytes, each referenced by their own conversation."""
    a = await store.create_conversation(conversation(user_id="alice"))
    b = await store.create_conversation(conversation(user_id="bob"))
    ra = await store.save_media(record("alice", data=b"shared picture"))
    rb = await store.save_media(record("bob", data=b"shared picture"))
    await append(store, a, [with_media(message(a, None), ra)])
    await append(store, b, [with_media(message(b, None), rb)])
    await store.mark_media_attached([ra.id, rb.id], retain=False)
    assert await store.delete_conversation(a.id)
    assert [d.id for d in await store.collect_media([ra.id, rb.id])] == [ra.id]
    assert await store.media_in_use(ra.sha256)  # bob's record still holds the bytes
    assert await store.delete_conversation(b.id)
    assert [d.id for d in await store.collect_media([rb.id])] == [rb.id]
    assert not await store.media_in_use(ra.sha256)


async def test_user_erasure_collects_unreferenced_records(store: StateStore) -> None:
    c = await store.create_conversation(conversation(user_id="carol"))
    used = await store.save_media(record("carol"))
    upload = await store.save_media(record("carol"))
    await append(store, c, [with_media(message(c, None), used)])
    await store.mark_media_attached([used.id], retain=True)
    assert await store.delete_user_conversations("carol") == [(c.id, c.lineage_id, c.created_at)]
    ids = await store.user_media_ids("carol")
    assert sorted(ids) == sorted([used.id, upload.id])
    deleted = await store.collect_media(ids, force=True)
    assert sorted(d.id for d in deleted) == sorted(ids)
    assert await store.user_media_ids("carol") == []


async def test_expired_conversations_lose_their_references(store: StateStore) -> None:
    """Expiry reclaims the messages (a sweep, or Redis itself); the periodic media sweep
    then finds the record among `collectable_media_ids` and collects it."""
    c = await store.create_conversation(
        conversation(ttl_seconds=1, expires_at=utcnow() + timedelta(seconds=1))
    )
    r = await store.save_media(record())
    await append(store, c, [with_media(message(c, None), r)], now=utcnow())
    await store.mark_media_attached([r.id], retain=False)
    if store.capabilities.native_ttl:
        await asyncio.sleep(1.3)
    else:
        await store.purge_expired(now=utcnow() + timedelta(seconds=5))
    assert r.id in await store.collectable_media_ids(limit=100)
    assert [d.id for d in await store.collect_media([r.id])] == [r.id]
