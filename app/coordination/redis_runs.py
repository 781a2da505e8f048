"""Run records and event logs on Redis Streams, readable from every instance.

Keys of one run share the hash tag `{<run_id>}` (one cluster slot, so scripts may touch
them together); `<prefix>` is `parley:` unless the URL says otherwise:

* `<prefix>run:{<id>}:events`: a stream, one entry per event, id `<seq>-1`, fields `type`
  and `data` (JSON), trimmed with `MAXLEN ~ max_events`;
* `<prefix>run:{<id>}:meta`: a hash, `seq` (last seq given out) and `done` (the terminal
  event's seq, once published);
* `<prefix>run:{<id>}:record`: the `RunRecord` as JSON;
* `<prefix>runs-of:{<conversation id>}`: a set, the ids of the conversation's runs (the
  index `erase` reads), kept `live_ttl_s + record_retention_s` after its newest run was
  created, so at least as long as any of its runs' keys. Written in the creating script
  on a single server; on a cluster (another slot than the run's keys) by a command of its
  own, before the run is created, so an index never misses a run.

`publish` is one script (the scripts are in `app.coordination.redis_run_scripts`):
`HINCRBY seq`, `XADD` with the explicit id, and expiries (the publishes of many runs at
once share a round trip: `app.coordination.redis_publish_batch`);
`create_and_publish` / `save_and_publish` write the record in the same script;
on a single server `create_and_publish_locking` also takes the run's turn lock there, and
`save_and_publish_releasing` frees it with the run's end. A live
run's keys get `live_ttl_s` (refreshed by every event, so a run orphaned by a crashed
instance is eventually forgotten); the terminal event sets `retention_s` on the stream and
`record_retention_s` on the record and meta, so a reconnect after the events expired still
learns the run's outcome (and gets a `run.snapshot`).

`follow` (in `app.coordination.redis_run_follow`) reads a consistent snapshot (meta +
`XRANGE` from `after + 1`) in one script, so "the counter says seq n was published but
the stream does not start at n" is exact:
that is `EventsExpired`. A run nobody knows (no record, no events) is waited for up to
`unknown_grace_s` before `EventsExpired`: an idempotent retry landing on another instance
gets the run id from the idempotency record a moment before the first instance creates
the run. Then `follow` blocks in `XREAD BLOCK` (`block_s` per call, looped) until the
terminal event. Blocking reads use the coordinator's separate blocking client, and at
most `max_blocking_reads` of them run at once per instance (a semaphore), so one slow
follower never delays another's or a request's commands; a follower holds a connection
only while blocked, never while its consumer is slow. Once events flowed, a Redis outage
mid-follow is retried with backoff for up to `follow_outage_s` before `StoreUnavailable`
ends the follow (the SSE client then reconnects with Last-Event-ID); the very first read
fails fast.

Cancellation requests are `PUBLISH <prefix>cancel <run_id>`; `cancel_requests()` is a
`SUBSCRIBE` that reconnects with backoff after any error (including a Redis restart) and
never raises. Pub/Sub is at-most-once: a request published while an instance is
reconnecting is lost, and the requester's own wait (`RunService.cancel`) times out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from redis.asyncio.cluster import RedisCluster

from app.coordination import redis_run_scripts as scripts
from app.coordination.base import (
    TERMINAL_EVENTS,
    RunEvent,
    RunLog,
    RunRecord,
    TurnLease,
    TurnLocks,
)
from app.coordination.redis_client import RedisClient, unavailable
from app.coordination.redis_publish_batch import PublishBatch
from app.coordination.redis_run_follow import RedisRunFollow
from app.coordination.redis_run_scripts import RunKeys
from app.coordination.retry import Backoff
from app.domain.limits import as_utc
from app.json_text import json_bytes

log = logging.getLogger("parley.coordination.runs")

_ERASE_CONCURRENCY = 32
_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)  # as `RunRecord`'s JSON writes it


class RedisRunLog(RunLog):
    """`RunLog` on Redis Streams (see the module docstring). The clients are the caller's
    to close; `blocking_client` defaults to `client` (fine for tests and tools)."""

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "parley:",
        blocking_client: RedisClient | None = None,
        retention_s: float = 3600.0,
        record_retention_s: float = 86400.0,
        live_ttl_s: float = 86400.0,
        max_events: int = 10_000,
        block_s: float = 2.0,
        max_blocking_reads: int = 256,
        follow_outage_s: float = 30.0,
        unknown_grace_s: float = 2.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._cancel_channel = f"{prefix}cancel"
        self._retention_ms = _ms(retention_s)
        self._record_retention_ms = _ms(max(record_retention_s, retention_s))
        self._live_ttl_ms = _ms(live_ttl_s)
        self._max_events = max_events
        self._follower = RedisRunFollow(
            client,
            blocking_client or client,
            prefix=prefix,
            block_ms=_ms(block_s),
            max_blocking_reads=max_blocking_reads,
            follow_outage_s=follow_outage_s,
            unknown_grace_s=unknown_grace_s,
        )
        self._publish = client.register_script(scripts.PUBLISH)
        self._save = client.register_script(scripts.SAVE)
        self._create_publish = client.register_script(scripts.CREATE_PUBLISH)
        self._index = client.register_script(scripts.INDEX)
        self._erase_ended = client.register_script(scripts.ERASE_ENDED)
        self._index_ttl_ms = self._live_ttl_ms + self._record_retention_ms
        # single server: the index entry rides in the creating script (see the module)
        self._create_publish_indexed = (
            None
            if isinstance(client, RedisCluster)
            else client.register_script(scripts.CREATE_PUBLISH_INDEXED)
        )
        self._save_publish = client.register_script(scripts.SAVE_PUBLISH)
        self._publish_many = client.register_script(scripts.PUBLISH_MANY)
        # single server: a run's creation and its turn lock in one script
        self._create_locking = (
            None
            if isinstance(client, RedisCluster)
            else client.register_script(scripts.CREATE_PUBLISH_LOCKING)
        )
        # single server: a run's end and its lock's release in one script
        self._end_releasing = (
            None
            if isinstance(client, RedisCluster)
            else client.register_script(scripts.END_RELEASING)
        )
        # concurrent publishes in one round trip (not on a cluster: see the module)
        self._publish_call: Any = (
            self._publish
            if isinstance(client, RedisCluster)
            else PublishBatch(client, self._publish).call
        )

    # --- records -----------------------------------------------------------------------

    async def create(self, record: RunRecord) -> None:
        key = RunKeys.of(self._prefix, record.run.id).record
        await self._add_to_index(record)
        with unavailable():
            await self._client.set(key, record.model_dump_json(), px=self._live_ttl_ms)

    def _index_key(self, conversation_id: str) -> str:
        return f"{self._prefix}runs-of:{{{conversation_id}}}"

    async def _add_to_index(self, record: RunRecord) -> None:
        index = self._index_key(record.run.conversation_id)
        with unavailable():
            await self._index(keys=[index], args=[record.run.id, self._index_ttl_ms])

    async def save(self, record: RunRecord) -> None:
        key = RunKeys.of(self._prefix, record.run.id).record
        with unavailable():
            await self._save(keys=[key], args=[record.model_dump_json(), self._live_ttl_ms])

    async def get(self, run_id: str) -> RunRecord | None:
        with unavailable():
            raw = await self._client.get(RunKeys.of(self._prefix, run_id).record)
        return None if raw is None else RunRecord.model_validate_json(raw)

    async def create_and_publish(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        if self._create_publish_indexed is None:  # a cluster: the index entry first
            await self._add_to_index(record)
            return await self._publish_with(self._create_publish, record, type_, data)
        index = self._index_key(record.run.conversation_id)
        args = [*self._event_args(type_, data), record.model_dump_json()]
        args += [record.run.id, self._index_ttl_ms]
        keys = [*RunKeys.of(self._prefix, record.run.id).all(), index]
        with unavailable():
            seq = await self._create_publish_indexed(keys=keys, args=args)
        return RunEvent(seq=int(seq), type=type_, data=data)

    async def create_and_publish_locking(
        self, locks: TurnLocks, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> tuple[RunEvent, TurnLease | None]:
        offer = None
        if self._create_locking is not None:  # (a cluster: the lock is another slot)
            offer = await locks.offer(record.run.conversation_id, record.run.id, self._client)
        if offer is None:
            return await super().create_and_publish_locking(locks, record, type_, data)
        try:
            index = self._index_key(record.run.conversation_id)
            args = [*self._event_args(type_, data), record.model_dump_json()]
            args += [record.run.id, self._index_ttl_ms, *offer.args]
            keys = [*RunKeys.of(self._prefix, record.run.id).all(), index, *offer.keys]
        except BaseException:
            offer.done(False, None)  # nothing was sent
            raise
        step = asyncio.ensure_future(self._creating_locking(keys, args))
        try:
            seq, acquired, lock_seq = await asyncio.shield(step)
        except asyncio.CancelledError:
            offer.abandon(_lock_outcome(step))  # it goes on; a lock it takes is undone
            raise
        except BaseException:
            offer.done(None, None)
            raise
        lease = offer.done(acquired, lock_seq)
        return RunEvent(seq=seq, type=type_, data=data), lease

    async def _creating_locking(self, keys: list[str], args: list[Any]) -> tuple[int, bool, int]:
        assert self._create_locking is not None
        with unavailable():
            seq, acquired, lock_seq = await self._create_locking(keys=keys, args=args)
        return int(seq), int(acquired) == 1, int(lock_seq)

    async def save_and_publish(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        return await self._publish_with(self._save_publish, record, type_, data)

    async def save_and_publish_releasing(
        self, lease: TurnLease, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        if self._end_releasing is None:  # a cluster: two steps
            return await super().save_and_publish_releasing(lease, record, type_, data)
        # encoded before the release is taken: an error here must leave the lease to the
        # usual release (review R13: taken first, the local gate leaked for good)
        payload = [*self._event_args(type_, data), record.model_dump_json()]
        release = lease.take_release(self._client)
        if release is None:  # a lock elsewhere: two steps
            return await super().save_and_publish_releasing(lease, record, type_, data)
        args = [*payload, release.value]
        keys = [*RunKeys.of(self._prefix, record.run.id).all(), release.key]
        deleted: bool | None = None
        try:
            with unavailable():
                seq, released = await self._end_releasing(keys=keys, args=args)
            deleted = int(released) == 1
        finally:
            release.done(deleted)
        return RunEvent(seq=int(seq), type=type_, data=data)

    # --- events ------------------------------------------------------------------------

    async def publish(self, run_id: str, type_: str, data: dict[str, Any]) -> RunEvent:
        with unavailable():
            seq = await self._publish_call(
                keys=RunKeys.of(self._prefix, run_id).all(), args=self._event_args(type_, data)
            )
        return RunEvent(seq=int(seq), type=type_, data=data)

    async def publish_many(
        self, run_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[RunEvent]:
        if len(events) < 2:
            return [await self.publish(run_id, type_, data) for type_, data in events]
        (type_, data), rest = events[0], events[1:]
        args = self._event_args(type_, data)
        for t, d in rest:
            args += [t, json_bytes(d), "1" if t in TERMINAL_EVENTS else "0"]
        with unavailable():
            seqs = await self._publish_many(keys=RunKeys.of(self._prefix, run_id).all(), args=args)
        return [
            RunEvent(seq=int(seq), type=t, data=d) for seq, (t, d) in zip(seqs, events, strict=True)
        ]

    async def _publish_with(
        self, script: Any, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        """`script` (`CREATE_PUBLISH` / `SAVE_PUBLISH`): the record and the event, atomic."""
        args = [*self._event_args(type_, data), record.model_dump_json()]
        with unavailable():
            seq = await script(keys=RunKeys.of(self._prefix, record.run.id).all(), args=args)
        return RunEvent(seq=int(seq), type=type_, data=data)

    def _event_args(self, type_: str, data: dict[str, Any]) -> list[str | bytes | int]:
        return [
            type_,
            json_bytes(data),
            self._max_events,
            "1" if type_ in TERMINAL_EVENTS else "0",
            self._retention_ms,
            self._record_retention_ms,
            self._live_ttl_ms,
        ]

    def follow(self, run_id: str, *, after: int) -> AsyncGenerator[RunEvent, None]:
        return self._follower.follow(run_id, after=after)

    # --- erasure -----------------------------------------------------------------------

    async def erase(
        self, conversation_id: str, lineage_id: str | None, *, created_at: datetime | None = None
    ) -> list[str]:
        """Each indexed run in one script (`scripts.ERASE_ENDED`: its keys share a slot, the
        index is in another), `_ERASE_CONCURRENCY` at a time; then the erased ids leave
        the index."""
        index = self._index_key(conversation_id)
        with unavailable():
            members = sorted(str(m) for m in await self._client.smembers(index))
        gate = asyncio.Semaphore(_ERASE_CONCURRENCY)
        # the incarnation as the record's JSON writes it, in UTC as `RunRecord` holds it
        # (compared as text in the script; review R-C)
        at = None if created_at is None else as_utc(created_at)
        created = "" if at is None else _DATETIME.dump_python(at, mode="json")
        args = [lineage_id or "", created]

        async def one(run_id: str) -> int:
            async with gate:
                keys = RunKeys.of(self._prefix, run_id).all()
                with unavailable():
                    return int(await self._erase_ended(keys=keys, args=args))

        outcomes = await asyncio.gather(*(one(run_id) for run_id in members))
        erased = [r for r, outcome in zip(members, outcomes, strict=True) if outcome == 1]
        if erased:
            with unavailable():
                await self._client.srem(index, *erased)
        return [r for r, outcome in zip(members, outcomes, strict=True) if outcome == 0]

    # --- cancellation ------------------------------------------------------------------

    async def request_cancel(self, run_id: str) -> None:
        with unavailable():
            await self._client.publish(self._cancel_channel, run_id)

    async def cancel_requests(self) -> AsyncIterator[str]:
        backoff = Backoff(0.1, 5.0)
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await self._client.initialize()  # a cluster client learns its slots here
                await pubsub.subscribe(self._cancel_channel)
                backoff.reset()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        yield str(message["data"])
            except Exception as exc:  # a background listener: log, reconnect, never die
                log.warning("cancel subscriber lost its connection (%r); reconnecting", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff.next())


async def _lock_outcome(step: Awaitable[tuple[int, bool, int]]) -> tuple[bool, int | None]:
    _, acquired, lock_seq = await step
    return acquired, lock_seq


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
