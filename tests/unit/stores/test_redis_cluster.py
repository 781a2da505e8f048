"""The Redis store on a real 3-node Redis Cluster: every key of a lineage (a conversation,
its messages, checkpoints and forks) lives in one hash slot, so each script is atomic on
one node; refs and indexes spread over the cluster."""

from __future__ import annotations

import asyncio
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
from app.stores.redis_conn import build_client, parse_redis_url
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


async def _node_ids(cluster: RedisClusterInfo) -> dict[int, str]:
    """port -> cluster node id."""
    node = Redis(host="127.0.0.1", port=cluster.ports[0], decode_responses=True)
    try:
        nodes = await node.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    finally:
        await node.aclose()
    text = nodes if isinstance(nodes, str) else "\n".join(f"{k} {v}" for k, v in nodes.items())
    ids = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and "@" in fields[1]:
            ids[int(fields[1].split("@")[0].rsplit(":", 1)[1])] = fields[0]
    return ids


async def _slot_owner(cluster: RedisClusterInfo, slot: int, *, via: int | None = None) -> int:
    """The port of the node that owns `slot`, as the node on `via` (default: the first)
    sees it."""
    node = Redis(host="127.0.0.1", port=via or cluster.ports[0], decode_responses=True)
    try:
        ranges = await node.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    finally:
        await node.aclose()
    return next(int(r[2][1]) for r in ranges if int(r[0]) <= slot <= int(r[1]))


async def test_concurrent_commands_on_a_moved_slot_all_succeed(
    cluster: RedisClusterInfo,
) -> None:
    """A slot moves to another node while a client's map still names the old one: every
    one of 40 concurrent commands follows its MOVED reply and succeeds. (With redis-py's
    default, the 5th MOVED re-discovers the cluster by closing every connection, and the
    commands still using one failed: with ConnectionError, retried, or, caught mid-connect,
    with AttributeError (a flaky CI failure).)"""
    client = build_client(parse_redis_url(cluster.url + "?prefix=storm:"))
    try:
        await client.set("{storm}warm", "1")  # the client now maps the slot to its owner
        await client.delete("{storm}warm")
        slot = await _slot(cluster, "{storm}warm")
        ids = await _node_ids(cluster)
        owner = await _slot_owner(cluster, slot)
        target = next(p for p in cluster.ports if p != owner)
        for port in (target, owner, *(p for p in cluster.ports if p not in (owner, target))):
            node = Redis(host="127.0.0.1", port=port, decode_responses=True)
            try:
                await node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])  # type: ignore[no-untyped-call]
            finally:
                await node.aclose()
        # the target's claim must win the gossip (a higher config epoch) before the burst,
        # or a node still naming the old owner sends the commands back and forth
        bump = Redis(host="127.0.0.1", port=target, decode_responses=True)
        try:
            await bump.execute_command("CLUSTER", "BUMPEPOCH")  # type: ignore[no-untyped-call]
        finally:
            await bump.aclose()
        deadline = time.monotonic() + 10
        while {await _slot_owner(cluster, slot, via=p) for p in cluster.ports} != {target}:
            assert time.monotonic() < deadline, "the nodes never agreed on the moved slot"
            await asyncio.sleep(0.05)
        results = await asyncio.gather(
            *(client.set(f"{{storm}}k{i}", str(i)) for i in range(40)), return_exceptions=True
        )
        assert [r for r in results if r is not True] == []
        assert await client.get("{storm}k39") == "39"
        # ... and no connection was torn down under them: the old owner still holds the
        # connections that brought back the MOVED replies (a re-discovery closes them all)
        old = Redis(host="127.0.0.1", port=owner, decode_responses=True)
        try:
            clients = await old.client_list()
        finally:
            await old.aclose()
        assert sum(c["cmd"] == "set" for c in clients) >= 5
        await client.delete(*(f"{{storm}}k{i}" for i in range(40)))
    finally:
        await client.aclose()
