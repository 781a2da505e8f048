"""The Redis store's hot paths cost O(batch)/O(limit), never O(history) (DESIGN §3, §11).

Two kinds of evidence at 10 vs 10,000 messages of history:

* timing: `get_path(limit=20)` and a 2-message `append_messages` take about as long;
* the exact command trace, read with MONITOR (which also shows the commands Lua scripts
  run): one EVALSHA per call, the same number of commands whatever the history, and no
  command that reads a whole message structure (HGETALL/HKEYS/HVALS/ZRANGE/... on the
  `msg`, `par`, `wr`, `kids` keys).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from app.domain import Conversation, Message
from app.stores.redis import RedisStore
from tests.contract.builders import append, chain, conversation
from tests.contract.cluster import delete_prefixed
from tests.services import check_redis, redis_url

pytestmark = pytest.mark.redis

_WHOLE_READS = {"HGETALL", "HKEYS", "HVALS", "HLEN", "ZRANGE", "ZRANGEBYLEX", "ZCARD", "DUMP"}
_MESSAGE_KEYS = (":msg", ":par", ":wr", ":kids")


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    url = redis_url()
    await check_redis(url)
    prefix = f"parley-test:{uuid.uuid4().hex[:12]}:"
    s = RedisStore(url, prefix=prefix)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        await delete_prefixed(url, prefix)


async def _filled(store: RedisStore, n: int) -> tuple[Conversation, Message]:
    c = await store.create_conversation(conversation())
    parent = None
    for start in range(0, n, 2000):
        msgs = chain(c, parent, min(2000, n - start))
        c = await append(store, c, msgs)
        parent = msgs[-1]
    assert c.message_count == n and parent is not None
    return c, parent


async def _median(action: Callable[[], Awaitable[Any]], runs: int = 40) -> float:
    for _ in range(5):
        await action()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


class _Appender:
    """Appends 2 messages on the current head each call (the history grows by 2)."""

    def __init__(self, store: RedisStore, c: Conversation, head: Message) -> None:
        self.store, self.c, self.head = store, c, head

    async def __call__(self) -> None:
        msgs = chain(self.c, self.head, 2)
        self.c = await append(self.store, self.c, msgs)
        self.head = msgs[-1]


async def test_get_path_and_append_do_not_depend_on_history(store: RedisStore) -> None:
    short, short_head = await _filled(store, 10)
    long, long_head = await _filled(store, 10_000)

    async def path_of(c: Conversation) -> None:
        got = await store.get_path(c.lineage_id, c.head_message_id or "", limit=20)
        assert len(got) == min(20, c.message_count)

    p_short = await _median(lambda: path_of(short))
    p_long = await _median(lambda: path_of(long))
    a_short = await _median(_Appender(store, short, short_head))
    a_long = await _median(_Appender(store, long, long_head))
    print(
        f"\nredis get_path(limit=20): 10 msgs {p_short * 1e3:.3f} ms, "
        f"10k msgs {p_long * 1e3:.3f} ms (x{p_long / p_short:.2f})"
        f"\nredis append(2 msgs): 10 msgs {a_short * 1e3:.3f} ms, "
        f"10k msgs {a_long * 1e3:.3f} ms (x{a_long / a_short:.2f})"
    )
    assert p_long < 3 * p_short, (p_short, p_long)
    assert a_long < 3 * a_short, (a_short, a_long)


async def _trace(store: RedisStore, action: Callable[[], Awaitable[Any]]) -> list[tuple[str, ...]]:
    """(client type, command, key) of every command `action` sent or ran in Lua."""
    url = redis_url()
    watcher, poker = Redis.from_url(url, decode_responses=True), Redis.from_url(url)
    end = f"trace-end-{uuid.uuid4().hex}"
    seen: list[tuple[str, ...]] = []
    try:
        async with watcher.monitor() as monitor:
            await action()
            await poker.echo(end)
            async with asyncio.timeout(10):
                while True:
                    info = await monitor.next_command()
                    if end in info["command"]:
                        break
                    words = info["command"].split(" ")
                    if any(store.keys.prefix in w for w in words):
                        key = words[1] if info["client_type"] == "lua" else ""
                        seen.append((info["client_type"], words[0].upper(), key))
    finally:
        await watcher.aclose()
        await poker.aclose()
    return seen


def _shape(trace: list[tuple[str, ...]]) -> Counter[tuple[str, str]]:
    """Commands per (command, key kind), ids blanked: comparable across conversations."""
    kinds = Counter[tuple[str, str]]()
    for _, command, key in trace:
        kind = key.rsplit("}:", 1)[-1].split(":")[0] if "}:" in key else ""
        kinds[(command, kind)] += 1
    return kinds


def _assert_no_whole_reads(trace: list[tuple[str, ...]]) -> None:
    for client_type, command, key in trace:
        if client_type == "lua" and command in _WHOLE_READS:
            assert not key.endswith(_MESSAGE_KEYS), (command, key)


async def test_command_traces_do_not_depend_on_history(store: RedisStore) -> None:
    short, short_head = await _filled(store, 10)
    long, long_head = await _filled(store, 10_000)

    traces = {}
    for name, (c, head) in {"short": (short, short_head), "long": (long, long_head)}.items():
        appender = _Appender(store, c, head)
        traces[f"append-{name}"] = await _trace(store, appender)
        c = appender.c

        async def read(c: Conversation = c) -> None:
            await store.get_path(c.lineage_id, c.head_message_id or "", limit=8)

        traces[f"path-{name}"] = await _trace(store, read)

    for trace in traces.values():
        _assert_no_whole_reads(trace)
        assert sum(1 for t, cmd, _ in trace if t != "lua" and cmd == "EVALSHA") == 1, trace
    assert _shape(traces["append-short"]) == _shape(traces["append-long"])
    assert _shape(traces["path-short"]) == _shape(traces["path-long"])

    append_lua = [(cmd, key) for t, cmd, key in traces["append-long"] if t == "lua"]
    message_writes = [(cmd, k) for cmd, k in append_lua if k.endswith(_MESSAGE_KEYS)]
    # Per new message: HEXISTS + HSET msg, HSET par, HSET wr, ZADD kids; plus the expiry
    # bookkeeping of the lineage keys (PERSIST or PEXPIREAT, one each).
    assert Counter(cmd for cmd, _ in message_writes) == Counter(
        {"HSET": 6, "HEXISTS": 2, "ZADD": 2, "PERSIST": 4}
    ), message_writes
    path_lua = Counter(cmd for t, cmd, _ in traces["path-long"] if t == "lua")
    assert path_lua == Counter({"HGET": 8, "HMGET": 1}), path_lua
    print(f"\nappend trace (10k history): {len(traces['append-long'])} commands")
