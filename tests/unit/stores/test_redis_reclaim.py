"""Redis deletion in bounded chunks (`app.stores.redis_reclaim`) and complete user
erasure, on one server and on a 3-node Redis Cluster: a big lineage is reclaimed chunk by
chunk, a reclaim interrupted between chunks converges (sweep, or another deletion), and
user erasure finds a conversation whose index entry was lost."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.domain import Conversation, utcnow
from app.stores.redis import RedisStore
from app.stores.redis_keys import LineageKeys
from app.stores.redis_lineage import RECLAIM_STEPS_PER_CALL
from app.stores.redis_reclaim import Reclaimer
from tests.contract.builders import conversation, fork_of, grow
from tests.contract.cluster import RedisClusterInfo, delete_prefixed, redis_cluster
from tests.services import check_redis, redis_url

pytestmark = pytest.mark.redis

CHUNK = 50


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterInfo]:
    with redis_cluster(tmp_path_factory.mktemp("reclaim-cluster")) as info:
        yield info


@pytest.fixture(params=["redis", "redis-cluster"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RedisStore]:
    prefix = f"parley-test-reclaim-{uuid.uuid4().hex[:12]}:"
    if request.param == "redis":
        url = redis_url()
        await check_redis(url)
    else:
        url = request.getfixturevalue("cluster").url
    s = RedisStore(url, prefix=prefix, reclaim_chunk=CHUNK)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        if request.param == "redis":
            await delete_prefixed(url, prefix)


class StepSpy:
    """Wraps `Reclaimer.step`: counts calls, records messages left after each, and can
    fail (a process dying between chunks) from call number `fail_from` on."""

    def __init__(self, store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.left: list[int] = []
        self.fail_from: int | None = None
        original: Callable[[Reclaimer, LineageKeys], Awaitable[bool]] = Reclaimer.step

        async def step(reclaimer: Reclaimer, lk: LineageKeys) -> bool:
            self.calls += 1
            if self.fail_from is not None and self.calls >= self.fail_from:
                raise RedisConnectionError("killed between chunks")
            done = await original(reclaimer, lk)
            self.left.append(int(await store.client.hlen(lk.msg)))
            return done

        monkeypatch.setattr(Reclaimer, "step", step)


async def _big_lineage(store: RedisStore, n: int) -> tuple[Conversation, Conversation]:
    """A root of `n` messages and a fork at its 11th message with 2 of its own."""
    root = await store.create_conversation(conversation())
    msgs = []
    for _ in range(n // 100):
        root, more = await grow(store, root, 100)
        msgs += more
    fork = await store.create_conversation(fork_of(root, msgs[10].id, message_count=11))
    fork, _ = await grow(store, fork, 2)
    return root, fork


async def _fork_path(store: RedisStore, fork: Conversation) -> int:
    return len(await store.get_path(fork.lineage_id, fork.head_message_id or "", limit=1000))


async def test_a_big_lineage_is_reclaimed_in_bounded_chunks(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, fork = await _big_lineage(store, 600)
    spy = StepSpy(store, monkeypatch)
    assert await store.delete_conversation(root.id)
    # one deletion runs at most RECLAIM_STEPS_PER_CALL chunks; the sweep finishes
    assert spy.calls <= RECLAIM_STEPS_PER_CALL
    for _ in range(20):
        await store.purge_expired(now=utcnow())
    # 589 unreachable messages of the root went, about CHUNK per script call
    assert spy.left[-1] == 13
    removed = [a - b for a, b in zip([602, *spy.left], spy.left, strict=False)]
    assert spy.calls >= 589 // (2 * CHUNK)
    assert max(removed) <= 2 * CHUNK, removed
    print(f"reclaim steps={spy.calls} removed per step max={max(removed)}")
    assert await _fork_path(store, fork) == 13
    fp = await store.footprint(root.lineage_id, [root.id, fork.id])
    assert fp["reclaim_pending"] == 0 and fp["messages"] == 13


async def test_a_reclaim_interrupted_between_chunks_is_finished_by_the_sweep(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, fork = await _big_lineage(store, 300)
    spy = StepSpy(store, monkeypatch)
    spy.fail_from = 3
    assert await store.delete_conversation(root.id)  # the deletion stands
    assert await store.get_conversation(root.id, now=utcnow()) is None
    fp = await store.footprint(root.lineage_id, [root.id, fork.id])
    assert fp["reclaim_pending"] == 1 and fp["messages"] > 13
    assert await _fork_path(store, fork) == 13  # nothing reachable was touched
    spy.fail_from = None
    for _ in range(20):
        await store.purge_expired(now=utcnow())
        fp = await store.footprint(root.lineage_id, [root.id, fork.id])
        if not fp["reclaim_pending"]:
            break
    assert fp["messages"] == 13 and fp["reclaim_pending"] == 0
    assert await _fork_path(store, fork) == 13
    assert await store.delete_conversation(fork.id)
    fp = await store.footprint(root.lineage_id, [root.id, fork.id])
    assert fp == dict.fromkeys(fp, 0)


async def test_an_interrupted_reclaim_is_finished_by_the_next_deletion(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, fork = await _big_lineage(store, 200)
    fork2 = await store.create_conversation(fork_of(fork, fork.head_message_id))
    spy = StepSpy(store, monkeypatch)
    spy.fail_from = 2
    assert await store.delete_conversation(root.id)
    spy.fail_from = None
    assert await store.delete_conversation(fork.id)  # fork2 still reaches every message
    ids = [root.id, fork.id, fork2.id]
    fp = await store.footprint(root.lineage_id, ids)
    assert fp["messages"] == 13 and fp["reclaim_pending"] == 0
    assert await store.delete_conversation(fork2.id)
    fp = await store.footprint(root.lineage_id, ids)
    assert fp == dict.fromkeys(fp, 0)


async def test_an_id_created_again_never_inherits_an_unfinished_reclaim(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, fork = await _big_lineage(store, 200)
    spy = StepSpy(store, monkeypatch)
    spy.fail_from = 2
    assert await store.delete_conversation(root.id)
    spy.fail_from = None
    fp = await store.footprint(root.lineage_id, [root.id, fork.id])
    assert fp["reclaim_pending"] == 1 and fp["messages"] > 13
    again = await store.create_conversation(conversation(root.id))
    # the create finished the reclaim first: of the old incarnation's messages only those
    # the fork reaches are left (same writer id, so they would count as the new one's)
    fp = await store.footprint(root.lineage_id, [root.id, fork.id])
    assert fp["messages"] == 13
    assert again.lineage_id == root.lineage_id
    await store.purge_expired(now=utcnow())  # the sweep drops the finished mark
    assert (await store.footprint(root.lineage_id, []))["reclaim_pending"] == 0


async def test_user_erasure_finds_a_conversation_whose_index_entry_was_lost(
    store: RedisStore,
) -> None:
    convs = [await store.create_conversation(conversation(user_id="eve")) for _ in range(3)]
    other = await store.create_conversation(conversation(user_id="bob"))
    _, msgs = await grow(store, other, 2)
    eves_fork = await store.create_conversation(fork_of(other, msgs[1].id, user_id="eve"))
    lost = [convs[1], eves_fork]
    for c in lost:  # the index writes "lost": no listing or index finds them
        await store.client.zrem(store.keys.idx_user("eve"), c.id)
        await store.client.zrem(store.keys.idx_all, c.id)
    indexed = await store.client.zrange(store.keys.idx_user("eve"), 0, -1)
    assert sorted(indexed) == sorted([convs[0].id, convs[2].id])
    erased = await store.delete_user_conversations("eve")
    assert erased == sorted((c.id, c.lineage_id, c.created_at) for c in [*convs, eves_fork])
    for c in convs:
        fp = await store.footprint(c.lineage_id, [c.id])
        assert fp == dict.fromkeys(fp, 0)
    fp = await store.footprint(other.lineage_id, [eves_fork.id])
    assert fp["refs"] == 0 and fp["index_entries"] == 0
    assert await store.get_conversation(other.id, now=utcnow()) is not None
