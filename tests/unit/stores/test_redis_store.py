"""Redis-specific behaviour the contract suite cannot see: native expiry of every key,
the listing indexes as verified hints, recovery paths of create, retried scripts,
several instances sharing a server, and failures (down server, restart)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.domain import utcnow
from app.errors import ConversationExists, StoreUnavailable
from app.stores import redis_index
from app.stores.base import ConversationFilter
from app.stores.redis import RedisStore
from app.stores.redis_conn import ClientOptions
from app.stores.redis_keys import to_us
from tests.contract.builders import append, chain, checkpoint, conversation, fork_of, grow, present
from tests.contract.cluster import delete_prefixed, free_port, redis_server
from tests.services import check_redis, redis_url

pytestmark = pytest.mark.redis


async def _open(prefix: str, *, ref_grace_ms: int = 60_000) -> RedisStore:
    s = RedisStore(redis_url(), prefix=prefix, ref_grace_ms=ref_grace_ms)
    await s.open()
    return s


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    url = redis_url()
    await check_redis(url)
    p = f"parley-test:{uuid.uuid4().hex[:12]}:"
    yield p
    await delete_prefixed(url, p)


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[RedisStore]:
    s = await _open(prefix)
    yield s
    await s.close()


async def _keys(store: RedisStore) -> set[str]:
    return {k async for k in store.client.scan_iter(match=f"{store.keys.prefix}*")}


async def _pttl(store: RedisStore, key: str) -> int:
    ttl: int = await store.client.pttl(key)
    return ttl


# --- key layout and native expiry -----------------------------------------------------


async def test_key_layout(store: RedisStore) -> None:
    c = await store.create_conversation(conversation("user:a:1"))
    after, msgs = await grow(store, c, 3)
    await store.create_checkpoint(checkpoint(after, msgs[0].id))
    await store.save_pack("p", "1", {"id": "p"})
    p, t = store.keys.prefix, "{user:a:1}"
    assert await _keys(store) == {
        *(f"{p}{t}:{name}" for name in ("convs", "msg", "par", "wr", "kids")),
        f"{p}{t}:c:user:a:1",
        f"{p}{t}:cp:user:a:1",
        f"{p}ref:{{user:a:1}}",
        *(f"{p}idx:{name}" for name in ("all", "user:alice", "pack:pack", "ids")),
        f"{p}{{packs}}:docs",
        f"{p}{{packs}}:order",
    }
    # One field per message: appending wrote 3 fields, nothing else grew.
    assert await store.client.hlen(store.keys.lineage(c.lineage_id).msg) == 3


async def test_expiry_is_native_and_covers_every_key(store: RedisStore) -> None:
    now = utcnow()
    c = await store.create_conversation(conversation(expires_at=now + timedelta(hours=1)))
    after, msgs = await grow(store, c, 2)
    await store.create_checkpoint(checkpoint(after, msgs[0].id))
    lk = store.keys.lineage(c.lineage_id)
    hour_ms = 3_600_000
    for key in [*lk.fixed, lk.conv(c.id), lk.cps(c.id)]:
        assert hour_ms - 5_000 < await _pttl(store, key) <= hour_ms, key
    ref_ttl = await _pttl(store, store.keys.ref(c.id))
    assert hour_ms + 55_000 < ref_ttl <= hour_ms + 60_000  # the grace period

    # A fork that never expires keeps the shared messages forever...
    f = await store.create_conversation(fork_of(c, msgs[1].id))
    assert all([await _pttl(store, k) == -1 for k in lk.fixed])
    assert await _pttl(store, lk.conv(c.id)) > 0 and await _pttl(store, lk.conv(f.id)) == -1
    # ...until it is deleted: the lineage expires with its last conversation again.
    assert await store.delete_conversation(f.id)
    assert all([await _pttl(store, k) > hour_ms - 5_000 for k in lk.fixed])


async def test_sliding_ttl_re_applies_the_expiry(store: RedisStore) -> None:
    now = utcnow()
    c = await store.create_conversation(
        conversation(ttl_seconds=600, expires_at=now + timedelta(seconds=600))
    )
    lk = store.keys.lineage(c.lineage_id)
    after = await append(store, c, chain(c, None, 1), now=now + timedelta(seconds=60))
    assert after.expires_at == now + timedelta(seconds=660)
    assert 650_000 < await _pttl(store, lk.conv(c.id)) <= 660_000
    assert 650_000 < await _pttl(store, lk.msg) <= 660_000
    assert 710_000 < await _pttl(store, store.keys.ref(c.id)) <= 720_000

    await store.touch_conversation(c.id, now + timedelta(hours=2))
    assert await _pttl(store, lk.conv(c.id)) > 7_000_000
    assert await _pttl(store, store.keys.ref(c.id)) > 7_000_000
    got = await store.get_conversation(c.id, now=now)
    assert got is not None and got.expires_at == now + timedelta(hours=2)


async def test_redis_deletes_an_expired_lineage_and_indexes_are_collected(prefix: str) -> None:
    store = await _open(prefix, ref_grace_ms=0)
    try:
        c = await store.create_conversation(
            conversation(expires_at=utcnow() + timedelta(milliseconds=300))
        )
        after, msgs = await grow(store, c, 3)
        await store.create_checkpoint(checkpoint(after, msgs[0].id))
        await asyncio.sleep(0.4)
        assert await store.get_conversation(c.id, now=utcnow()) is None
        assert await present(store, c.lineage_id, [m.id for m in msgs]) == set()
        leftovers = await _keys(store)
        assert all("idx:" in k for k in leftovers), leftovers  # data gone, only hints left
        assert await store.purge_expired(now=utcnow()) == 0
        assert await _keys(store) == set()  # the hints were collected
    finally:
        await store.close()


# --- listing indexes are hints ---------------------------------------------------------


async def test_entries_of_vanished_conversations_are_skipped_and_removed(
    store: RedisStore,
) -> None:
    a = await store.create_conversation(conversation("a"))
    b = await store.create_conversation(conversation("b"))
    lk = store.keys.lineage(a.lineage_id)
    await store.client.delete(lk.conv(a.id))  # as if Redis expired it without our code
    page = await store.list_conversations(ConversationFilter(), now=utcnow(), limit=10)
    assert [c.id for c in page.data] == [b.id]
    assert await store.client.zscore(store.keys.idx_all, a.id) is None


async def test_an_entry_behind_its_conversation_is_skipped_then_repaired(
    store: RedisStore,
) -> None:
    c = await store.create_conversation(conversation("lagging"))
    real = to_us(c.updated_at)
    await store.client.zadd(store.keys.idx_all, {c.id: real - 1_000})  # a lost index write
    page = await store.list_conversations(ConversationFilter(), now=utcnow(), limit=10)
    assert page.data == []  # never listed at a position it does not have
    assert await store.client.zscore(store.keys.idx_all, c.id) == real
    page = await store.list_conversations(ConversationFilter(), now=utcnow(), limit=10)
    assert [x.id for x in page.data] == [c.id]


async def test_moving_a_conversation_to_another_user_moves_its_entries(
    store: RedisStore,
) -> None:
    c = await store.create_conversation(conversation(user_id="ann"))
    moved = c.model_copy(update={"user_id": "ben", "expires_at": utcnow() + timedelta(1)})
    await store.update_conversation(moved, expected_version=c.version)
    ann = await store.list_conversations(ConversationFilter(user_id="ann"), now=utcnow(), limit=5)
    ben = await store.list_conversations(ConversationFilter(user_id="ben"), now=utcnow(), limit=5)
    assert ann.data == [] and [x.id for x in ben.data] == [c.id]
    assert await store.client.zcard(store.keys.idx_user("ann")) == 0
    assert await store.client.zcard(store.keys.idx_exp) == 1


async def test_a_create_is_indexed_by_its_own_script(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hint writes after the commit may be lost (a full pool, a blip): a create does not
    depend on them, it is listed and erased anyway."""

    async def lost(*_: object, **__: object) -> None:
        raise RedisConnectionError("lost on purpose")

    monkeypatch.setattr(store._p.indexes, "write", lost)
    c = await store.create_conversation(conversation("indexed", user_id="ivy"))
    page = await store.list_conversations(ConversationFilter(user_id="ivy"), now=utcnow(), limit=5)
    assert [x.id for x in page.data] == [c.id]
    assert await store.delete_user_conversations("ivy") == [(c.id, c.lineage_id, c.created_at)]
    assert await store.get_conversation(c.id, now=utcnow()) is None


async def test_an_append_rescores_its_index_entries_in_its_own_script(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On one server the append script moves the conversation's entries to its new
    `updated_at` itself: no index round trip after the commit (was one pipeline)."""
    calls: list[object] = []

    async def counted(*args: object, **kwargs: object) -> None:
        calls.append(args)

    c = await store.create_conversation(conversation("appended", user_id="ivy"))
    monkeypatch.setattr(store._p.indexes, "write", counted)
    c = await append(store, c, chain(c, None, 2))
    assert calls == []
    for key in (store.keys.idx_all, store.keys.idx_user("ivy"), store.keys.idx_pack(c.pack_id)):
        assert await store.client.zscore(key, c.id) == to_us(c.updated_at)
    page = await store.list_conversations(ConversationFilter(user_id="ivy"), now=utcnow(), limit=5)
    assert [x.id for x in page.data] == [c.id]


async def test_an_append_from_a_stale_copy_still_indexes_the_stored_user(
    store: RedisStore,
) -> None:
    """The caller's copy names the old user (moved meanwhile): the script leaves the
    index alone and the full index write after it uses the stored conversation."""
    c = await store.create_conversation(conversation(user_id="ann"))
    moved = await store.update_conversation(
        c.model_copy(update={"user_id": "ben"}), expected_version=c.version
    )
    stale = moved.model_copy(update={"user_id": "ann"})
    after = await append(store, stale, chain(stale, None, 2))
    assert after.user_id == "ben"
    assert await store.client.zscore(store.keys.idx_user("ben"), c.id) == to_us(after.updated_at)
    assert await store.client.zscore(store.keys.idx_user("ann"), c.id) is None


async def test_a_user_move_is_indexed_by_its_own_script(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index write after an update lost on purpose: the erasure of the new user still
    finds the conversation, the old user's erasure leaves it alone."""
    c = await store.create_conversation(conversation("mover", user_id="old"))

    async def lost(*_: object, **__: object) -> None:
        raise RedisConnectionError("lost on purpose")

    monkeypatch.setattr(store._p.indexes, "write", lost)
    moved = c.model_copy(update={"user_id": "new"})
    await store.update_conversation(moved, expected_version=c.version)
    old = await store.list_conversations(ConversationFilter(user_id="old"), now=utcnow(), limit=5)
    assert old.data == []
    assert await store.delete_user_conversations("old") == []
    assert await store.delete_user_conversations("new") == [(c.id, c.lineage_id, c.created_at)]
    assert await store.get_conversation(c.id, now=utcnow()) is None


async def test_entries_of_a_create_in_flight_are_kept_by_listing(store: RedisStore) -> None:
    """On a cluster a create writes its entries before the conversation: listing meanwhile
    must not drop them (a fresh uncommitted claim), but drops those of an abandoned one."""
    c = conversation("pending", user_id="pam")
    await store._p.indexes.write(c)
    ref = store.keys.ref(c.id)
    now_ms = int(time.time() * 1000)
    await store.client.hset(ref, mapping={"l": c.lineage_id, "t": "x", "c": now_ms, "s": "0"})
    flt = ConversationFilter(user_id="pam")
    assert (await store.list_conversations(flt, now=utcnow(), limit=5)).data == []
    assert await store.client.zscore(store.keys.idx_user("pam"), c.id) is not None
    await store.client.hset(ref, "c", now_ms - 60_000)
    assert (await store.list_conversations(flt, now=utcnow(), limit=5)).data == []
    assert await store.client.zscore(store.keys.idx_user("pam"), c.id) is None


async def test_a_full_pool_waits_instead_of_failing(prefix: str) -> None:
    s = RedisStore(redis_url(), prefix=prefix, options=ClientOptions(max_connections=2))
    await s.open()
    try:
        made = await asyncio.gather(
            *(s.create_conversation(conversation(f"pool-{i}")) for i in range(40))
        )
        assert len(made) == 40
        page = await s.list_conversations(ConversationFilter(), now=utcnow(), limit=50)
        assert len(page.data) == 40
    finally:
        await s.close()


async def test_a_scan_budget_returns_short_pages_that_still_walk_everything(
    store: RedisStore,
) -> None:
    for i in range(12):
        await store.create_conversation(conversation(f"x{i:02d}", metadata={"hit": i % 5 == 0}))
    store._p.indexes.budget = 4  # examine at most 4 candidates per call
    flt = ConversationFilter(metadata={"hit": "true"})
    seen: list[str] = []
    cursor = None
    calls = 0
    while True:
        page = await store.list_conversations(flt, now=utcnow(), limit=10, cursor=cursor)
        calls += 1
        seen += [c.id for c in page.data]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == ["x00", "x05", "x10"] and len(set(seen)) == 3
    assert calls >= 3


@pytest.mark.parametrize("lex_max", [1000, 2])
async def test_prefix_listing_with_and_without_the_lex_index(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch, lex_max: int
) -> None:
    monkeypatch.setattr(redis_index, "LEX_MAX", lex_max)
    for name in ["t:a:1", "t:a:2", "t:a:3", "t:b:1", "u:a:1"]:
        await store.create_conversation(conversation(name))
    flt = ConversationFilter(prefix="t:a:")
    first = await store.list_conversations(flt, now=utcnow(), limit=2)
    rest = await store.list_conversations(flt, now=utcnow(), limit=2, cursor=first.next_cursor)
    assert [c.id for c in first.data + rest.data] == ["t:a:3", "t:a:2", "t:a:1"]
    assert rest.next_cursor is None


# --- create: claims, left-overs, stale incarnations ------------------------------------


async def test_an_abandoned_claim_is_taken_over_but_a_fresh_one_is_respected(
    store: RedisStore,
) -> None:
    ref = store.keys.ref("claimed")
    old_ms = int(time.time() * 1000) - 60_000
    await store.client.hset(ref, mapping={"l": "claimed", "t": "x", "c": old_ms, "s": "0"})
    assert (await store.create_conversation(conversation("claimed"))).id == "claimed"

    ref = store.keys.ref("fresh")
    now_ms = int(time.time() * 1000)
    await store.client.hset(ref, mapping={"l": "fresh", "t": "y", "c": now_ms, "s": "0"})
    with pytest.raises(ConversationExists):
        await store.create_conversation(conversation("fresh"))


async def test_a_dangling_committed_ref_is_replaced(store: RedisStore) -> None:
    await store.client.hset(
        store.keys.ref("d"), mapping={"l": "elsewhere", "t": "z", "c": "0", "s": "1"}
    )
    assert (await store.create_conversation(conversation("d"))).id == "d"
    assert await store.get_conversation("d", now=utcnow()) is not None


async def test_a_leftover_without_ref_is_reclaimed(store: RedisStore) -> None:
    c = await store.create_conversation(conversation("lo"))
    _, msgs = await grow(store, c, 2)
    await store.client.delete(store.keys.ref("lo"))  # e.g. a crash in the middle of a delete
    again = await store.create_conversation(conversation("lo"))
    assert await store.get_conversation("lo", now=utcnow()) == again
    assert await present(store, c.lineage_id, [m.id for m in msgs]) == set()


async def test_messages_of_an_expired_incarnation_are_reclaimed_on_re_create(
    store: RedisStore,
) -> None:
    keeper = await store.create_conversation(conversation())
    soon = utcnow() + timedelta(milliseconds=200)
    b = await store.create_conversation(fork_of(keeper, None, expires_at=soon))
    _, msgs = await grow(store, b, 2)
    await asyncio.sleep(0.3)  # Redis expires b's hash; the lineage lives on (keeper)
    assert await present(store, b.lineage_id, [m.id for m in msgs]) == {m.id for m in msgs}
    await store.client.delete(store.keys.ref(b.id))  # skip the ref's grace period
    await store.create_conversation(fork_of(keeper, None).model_copy(update={"id": b.id}))
    assert await present(store, b.lineage_id, [m.id for m in msgs]) == set()


# --- retries and several instances ------------------------------------------------------


async def test_a_retried_append_reports_its_own_success(store: RedisStore) -> None:
    c = await store.create_conversation(conversation())
    msgs = chain(c, None, 2)
    first = await append(store, c, msgs)
    again = await append(store, c, msgs)  # what a retry after a lost reply sends
    assert again == first and again.version == c.version + 1


async def test_instances_follow_a_conversation_recreated_in_another_lineage(prefix: str) -> None:
    a, b = await _open(prefix), await _open(prefix)
    try:
        first = await a.create_conversation(conversation("shared", lineage_id="L1"))
        assert await b.get_conversation("shared", now=utcnow()) == first  # b caches L1
        await a.delete_conversation("shared")
        second = await a.create_conversation(conversation("shared", lineage_id="L2"))
        assert await b.get_conversation("shared", now=utcnow()) == second
        await b.create_checkpoint(checkpoint(second, None))
        assert len(await a.list_checkpoints("shared")) == 1
    finally:
        await a.close()
        await b.close()


# --- failures ------------------------------------------------------------------------


async def test_a_down_server_fails_fast() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.open()
    assert time.monotonic() - started < 3


async def test_a_restarted_server_is_reconnected(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        store = RedisStore(server.url)
        await store.open()
        try:
            c = await store.create_conversation(conversation())
            await grow(store, c, 2)
            server.stop()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.get_conversation(c.id, now=utcnow())
            with pytest.raises(StoreUnavailable):
                await store.ping()
            assert time.monotonic() - started < 5
            server.start()  # same port, empty (no persistence), no scripts loaded
            await store.ping()
            c2 = await store.create_conversation(conversation())
            after, _ = await grow(store, c2, 2)
            assert await store.get_conversation(c2.id, now=utcnow()) == after
        finally:
            await store.close()


async def test_a_stored_time_past_the_datetime_range_reads_as_its_end(store: RedisStore) -> None:
    """Written before imported datetimes were bounded (outside tester T14): every read of
    such a conversation was an OverflowError (a 500 on GET, messages, export, DELETE)."""
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    c = await store.create_conversation(conversation("t14", updated_at=early))
    got = await store.get_conversation(c.id, now=utcnow())
    assert got is not None and got.updated_at == datetime.min.replace(tzinfo=UTC)
    assert await store.delete_conversation(c.id)
    assert await store.get_conversation(c.id, now=utcnow()) is None
