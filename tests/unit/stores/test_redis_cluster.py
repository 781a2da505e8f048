"""The Redis store on a real 3-node Redis Cluster: every key of a lineage (a conversation,
its messages, checkpoints and forks) lives in one hash slot, so each script is atomic on
one node; refs and indexes spread over the cluster."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from app.domain import Conversation, utcnow
from app.errors import StoreUnavailable
from app.stores.base import ConversationFilter
from app.stores.redis import RedisStore
from tests.contract.builders import checkpoint, conversation, fork_of, grow, present
from tests.contract.cluster import RedisClusterInfo, redis_cluster

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterInfo]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as info:
        yield info


@pytest.fixture
async def store(cluster: RedisClusterInfo) -> AsyncIterator[RedisStore]:
    s = RedisStore(cluster.url, prefix="slots:")
    await s.open()
    yield s
    await s.close()


async def _keys_by_node(cluster: RedisClusterInfo, prefix: str) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for port in cluster.ports:
        node = Redis(host="127.0.0.1", port=port, decode_responses=True)
        try:
            found[port] = {k async for k in node.scan_iter(match=f"{prefix}*")}
        finally:
            await node.aclose()
    return found


async def _slot(cluster: RedisClusterInfo, key: str) -> int:
    node = Redis(host="127.0.0.1", port=cluster.ports[0], decode_responses=True)
    try:
        slot = await node.execute_command("CLUSTER", "KEYSLOT", key)  # type: ignore[no-untyped-call]
    finally:
        await node.aclose()
    return int(slot)


async def test_a_lineage_lives_in_one_slot(store: RedisStore, cluster: RedisClusterInfo) -> None:
    a = await store.create_conversation(conversation("tenant:1:conv:1"))
    a_after, a_msgs = await grow(store, a, 6)
    for m in a_msgs[::2]:
        await store.create_checkpoint(checkpoint(a_after, m.id))
    f = await store.create_conversation(fork_of(a, a_msgs[2].id, message_count=3))
    f_after, f_msgs = await grow(store, f, 3)
    await store.create_checkpoint(checkpoint(f_after, f_msgs[0].id))
    other = await store.create_conversation(conversation("tenant:2:conv:1"))
    await grow(store, other, 2)

    by_node = await _keys_by_node(cluster, "slots:")
    everything = set().union(*by_node.values())
    tag = f"slots:{{{a.lineage_id}}}:"
    lineage_keys = {k for k in everything if k.startswith(tag)}
    assert lineage_keys == {
        *(tag + name for name in ("convs", "msg", "par", "wr", "kids")),
        f"{tag}c:{a.id}",
        f"{tag}cp:{a.id}",
        f"{tag}c:{f.id}",  # the fork's own keys share its lineage's tag
        f"{tag}cp:{f.id}",
    }
    slots = {await _slot(cluster, k) for k in lineage_keys}
    assert len(slots) == 1, slots
    holders = [port for port, keys in by_node.items() if lineage_keys & keys]
    assert len(holders) == 1 and lineage_keys <= by_node[holders[0]]

    # Each ref key sits in its own conversation's slot; the other lineage elsewhere.
    assert await _slot(cluster, store.keys.ref(f.id)) == await _slot(cluster, f.id)
    other_slot = await _slot(cluster, store.keys.lineage(other.lineage_id).msg)
    assert other_slot == await _slot(cluster, other.lineage_id) != slots.pop()

    # The multi-key scripts ran on that node: reads, deletion and reclaim work.
    path = await store.get_path(a.lineage_id, f_after.head_message_id or "", limit=10)
    assert [m.id for m in path] == [m.id for m in reversed(a_msgs[:3] + f_msgs)]
    assert await store.delete_conversation(a.id)
    assert await present(store, a.lineage_id, [m.id for m in a_msgs]) == {m.id for m in a_msgs[:3]}
    flt = ConversationFilter()
    page = await store.list_conversations(flt, now=utcnow(), limit=5)
    assert [c.id for c in page.data] == [other.id, f.id]
    assert await store.delete_conversation(f.id)
    left = set().union(*(await _keys_by_node(cluster, "slots:")).values())
    assert not any(k.startswith(tag) for k in left)


async def test_cluster_ping_and_seed_list(store: RedisStore, cluster: RedisClusterInfo) -> None:
    await store.ping()
    assert store.cluster
    assert cluster.url.count(",") == 2


async def test_a_lost_node_fails_its_slots_fast(tmp_path: Path) -> None:
    with redis_cluster(tmp_path) as cluster:
        store = RedisStore(cluster.url)
        await store.open()
        try:
            convs = [await store.create_conversation(conversation()) for _ in range(12)]
            victim = cluster.servers[0]
            victim.stop()

            client = store.client
            assert isinstance(client, RedisCluster)

            def on_victim(c: Conversation) -> bool:
                node = client.get_node_from_key(store.keys.lineage(c.lineage_id).conv(c.id))
                return node is not None and node.port == victim.port

            lost = [c for c in convs if on_victim(c)]
            kept = [c for c in convs if not on_victim(c)]
            assert lost and kept
            for c in lost:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await store.get_conversation(c.id, now=utcnow())
                assert time.monotonic() - started < 2
            for c in kept:
                assert await store.get_conversation(c.id, now=utcnow()) == c
            with pytest.raises(StoreUnavailable):
                await store.ping()  # not ready: a share of the lineages is unreachable
        finally:
            await store.close()
