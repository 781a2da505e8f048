"""The follow side of `app.coordination.redis_runs` (`RedisRunLog.follow`; the module
docstring there says how it reads: one snapshot script, then blocking `XREAD`s, an outage
mid-follow ridden out for `follow_outage_s`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster

from app.coordination import redis_run_scripts as scripts
from app.coordination.base import TERMINAL_EVENTS, EventsExpired, RunEvent
from app.coordination.redis_client import RedisClient, unavailable
from app.coordination.redis_run_scripts import RunKeys
from app.coordination.retry import Backoff
from app.errors import StoreUnavailable

_BATCH = 500
T = TypeVar("T")


@dataclass(frozen=True)
class _Snapshot:
    seq: int  # last seq published (0: none yet, or the meta expired)
    done: int  # seq of the terminal event, 0 while running
    stream_exists: bool
    record_exists: bool
    events: list[RunEvent]


class RedisRunFollow:
    """Follows runs' event logs for a `RedisRunLog`: `client` runs the snapshot script,
    `blocking` the blocking reads, at most `max_blocking_reads` at once."""

    def __init__(
        self,
        client: RedisClient,
        blocking: RedisClient,
        *,
        prefix: str,
        block_ms: int,
        max_blocking_reads: int,
        follow_outage_s: float,
        unknown_grace_s: float,
    ) -> None:
        self._prefix = prefix
        self._blocking = blocking
        self._block_ms = block_ms
        self._slots = asyncio.Semaphore(max_blocking_reads)
        self._follow_outage_s = follow_outage_s
        self._unknown_grace_s = unknown_grace_s
        self._read = client.register_script(scripts.READ)

    async def follow(self, run_id: str, *, after: int) -> AsyncGenerator[RunEvent, None]:
        keys = RunKeys.of(self._prefix, run_id)
        last = after
        snap = await self._snapshot(keys, last)  # fails fast: nothing was sent yet
        grace = Backoff(0.01, 0.2)
        deadline = time.monotonic() + self._unknown_grace_s
        while snap.seq == 0 and not snap.record_exists:
            # Unknown: expired long ago, or not created *yet* (an idempotent retry on
            # another instance learns the run id before the first instance creates it).
            if time.monotonic() >= deadline:
                raise EventsExpired(run_id)
            await asyncio.sleep(grace.next())
            snap = await self._snapshot(keys, last)
        while True:
            if snap.done and not snap.stream_exists:
                raise EventsExpired(run_id, last_seq=snap.seq)
            if snap.seq > last and (not snap.events or snap.events[0].seq != last + 1):
                raise EventsExpired(run_id, last_seq=snap.seq)
            for event in snap.events:
                last = event.seq
                yield event
                if event.type in TERMINAL_EVENTS:
                    return
            if snap.done and last >= snap.done:
                return  # asked for events after the terminal one: nothing more will come
            if len(snap.events) < _BATCH:
                live = await self._retrying(self._block, keys, last)
                if live:
                    if live[0].seq != last + 1:
                        # overtaken by trimming while blocked
                        raise EventsExpired(run_id, last_seq=live[-1].seq)
                    snap = _Snapshot(live[-1].seq, 0, True, True, live)
                    continue
            snap = await self._retrying(self._snapshot, keys, last)

    async def _snapshot(self, keys: RunKeys, last: int) -> _Snapshot:
        with unavailable():
            reply: Any = await self._read(keys=keys.all(), args=[f"{last + 1}-0", _BATCH])
        seq, done, stream_exists, record_exists, entries = reply
        return _Snapshot(
            seq=int(seq),
            done=int(done),
            stream_exists=bool(stream_exists),
            record_exists=bool(record_exists),
            events=[_event(id_, _pairs(flat)) for id_, flat in entries],
        )

    async def _block(self, keys: RunKeys, last: int) -> list[RunEvent]:
        async with self._slots:
            with unavailable():
                reply = await self._xread(keys.events, f"{last}-1")
        if not reply:
            return []
        _, entries = reply[0]
        return [_event(id_, fields) for id_, fields in entries]

    async def _xread(self, key: str, after_id: str) -> Any:
        client = self._blocking
        if not isinstance(client, RedisCluster):
            return await client.xread({key: after_id}, count=_BATCH, block=self._block_ms)
        # XREAD has "movable keys": left alone, redis-py asks a node `COMMAND GETKEYS`
        # before every call to find the slot, which is a round trip more and breaks
        # under concurrent followers. The stream's node is known from its key.
        await client.initialize()  # no-op once the slot map is loaded
        node = client.get_node_from_key(key)
        args = ("COUNT", _BATCH, "BLOCK", self._block_ms, "STREAMS", key, after_id)
        return await client.execute_command("XREAD", *args, target_nodes=node)

    async def _retrying(
        self, op: Callable[[RunKeys, int], Awaitable[T]], keys: RunKeys, last: int
    ) -> T:
        """Ride out a Redis outage of up to `follow_outage_s` in the middle of a follow."""
        backoff = Backoff(0.05, 2.0)
        down_since: float | None = None
        while True:
            try:
                return await op(keys, last)
            except StoreUnavailable:
                now = time.monotonic()
                down_since = down_since or now
                if now - down_since >= self._follow_outage_s:
                    raise
                await asyncio.sleep(backoff.next())


def _event(stream_id: str, fields: dict[str, str]) -> RunEvent:
    seq = int(stream_id.partition("-")[0])
    return RunEvent(seq=seq, type=fields["type"], data=json.loads(fields["data"]))


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
