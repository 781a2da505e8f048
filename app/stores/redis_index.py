"""Listing indexes of the Redis store: written after each conversation write, read by
`list_conversations`, cleaned lazily. They are hints (see the consistency model in
`app.stores.redis`): every candidate is checked against the conversation itself.

Sources, most selective first: the user's index, the pack's index, the ids whose prefix
matches (from the lex-ordered `idx:ids`, when at most `LEX_MAX` ids match), the global
index. A source yields (id, indexed updated_at) pairs in (updated_at desc, id desc) order
strictly after the cursor, in batches that grow from `limit + 1` up to `MAX_BATCH`; a call
examines at most `budget` candidates, then returns a short page whose cursor continues
where it stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from app.domain import Conversation
from app.stores._common import Unreadable, listing_cursor, prefix_upper_bound
from app.stores.base import ConversationFilter, encode_cursor
from app.stores.redis_conn import RedisClient
from app.stores.redis_keys import (
    RedisKeys,
    exp_member,
    from_us,
    parse_exp_member,
    to_us,
)
from app.stores.redis_scripts import Scripts

# An uncommitted ref claim younger than this is a create in flight (see `redis_refs`).
CLAIM_TIMEOUT_MS = 30_000
LEX_MAX = 1000  # prefix matches read whole from idx:ids (then sorted here) at most
MAX_BATCH = 512
DEFAULT_BUDGET = 5000  # candidates examined per list call before returning a short page
GC_BATCH = 32

Fetch = Callable[[list[str]], Awaitable[list[Conversation | Unreadable | None]]]
Position = tuple[int, str]  # (updated_at in µs, conversation id)


class _Source(Protocol):
    key: str

    async def next_batch(self, cap: int) -> list[Position] | None:
        """The next (at most `cap`) candidates (score, id), or None when there are no
        more."""


@dataclass
class _ZsetSource:
    """An index read newest first, continuing by score (plus an offset among equal
    scores), so entries removed meanwhile never shift what comes next."""

    client: RedisClient
    key: str
    after: Position | None
    size: int
    _high: int | None = None
    _ties: int = 0
    _done: bool = False

    def __post_init__(self) -> None:
        self._high = self.after[0] if self.after is not None else None

    async def next_batch(self, cap: int) -> list[Position] | None:
        if self._done:
            return None
        size = min(self.size, cap)
        top: int | str = "+inf" if self._high is None else self._high
        reply = await self.client.zrange(
            self.key,
            top,
            "-inf",
            desc=True,
            withscores=True,
            byscore=True,
            offset=self._ties,
            num=size,
        )
        rows = cast(list[tuple[str, float]], reply)
        found = [(int(score), member) for member, score in rows]
        if len(rows) < size:
            self._done = True
        elif found:
            lowest = found[-1][0]
            if lowest == self._high:
                self._ties += len(found)
            else:
                self._high = lowest
                self._ties = sum(1 for score, _ in found if score == lowest)
        self.size = min(self.size * 2, MAX_BATCH)
        after = self.after
        return [p for p in found if after is None or p < after]


@dataclass
class _ListSource:
    key: str
    items: list[Position]
    size: int

    async def next_batch(self, cap: int) -> list[Position] | None:
        if not self.items:
            return None
        size = min(self.size, cap)
        batch, self.items = self.items[:size], self.items[size:]
        self.size = min(self.size * 2, MAX_BATCH)
        return batch


@dataclass
class _Cleanup:
    missing: list[tuple[str, str, int]] = field(default_factory=list)  # key, id, score
    behind: list[tuple[str, str, int]] = field(default_factory=list)  # key, id, real score


class Indexes:
    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys,
        scripts: Scripts,
        *,
        grace_ms: int,
        budget: int = DEFAULT_BUDGET,
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._grace_ms = grace_ms
        self.budget = budget

    # --- writes ------------------------------------------------------------------------

    def script_keys(self, c: Conversation) -> list[str]:
        """The index keys the create and update scripts write on one server (KEYS[8..12]
        of `redis_scripts_lineage.CREATE` / `UPDATE`)."""
        k = self._keys
        return [k.idx_all, k.idx_user(c.user_id), k.idx_pack(c.pack_id), k.idx_ids, k.idx_exp]

    def score_keys(self, c: Conversation) -> list[str]:
        """The index keys the append script re-scores on one server (KEYS[11..14] of
        `redis_scripts_messages.APPEND`)."""
        k = self._keys
        return [k.idx_all, k.idx_user(c.user_id), k.idx_pack(c.pack_id), k.idx_ids]

    async def write(
        self,
        c: Conversation,
        *,
        previous: tuple[str, str] | None = None,
        expiry: bool = True,
    ) -> None:
        """Index `c` as stored now; `previous` = its (user_id, pack_id) before an update;
        `expiry=False` when its expiry did not change (an append without TTL)."""
        k, cid = self._keys, c.id
        pipe: Any = self._client.pipeline(transaction=False)
        upd = to_us(c.updated_at)
        for key in (k.idx_all, k.idx_user(c.user_id), k.idx_pack(c.pack_id)):
            pipe.zadd(key, {cid: upd})
        pipe.zadd(k.idx_ids, {cid: 0})
        member = exp_member(cid, c.user_id, c.pack_id)
        if c.expires_at is not None and expiry:
            pipe.zadd(k.idx_exp, {member: to_us(c.expires_at)})
        elif expiry:
            pipe.zrem(k.idx_exp, member)
        if previous is not None and previous != (c.user_id, c.pack_id):
            old_user, old_pack = previous
            if old_user != c.user_id:
                pipe.zrem(k.idx_user(old_user), cid)
            if old_pack != c.pack_id:
                pipe.zrem(k.idx_pack(old_pack), cid)
            pipe.zrem(k.idx_exp, exp_member(cid, old_user, old_pack))
        await pipe.execute()

    async def set_expiry(self, cid: str, user_id: str, pack_id: str, expires_us: int) -> None:
        await self._client.zadd(self._keys.idx_exp, {exp_member(cid, user_id, pack_id): expires_us})

    async def remove(self, cid: str, user_id: str, pack_id: str) -> None:
        k = self._keys
        pipe: Any = self._client.pipeline(transaction=False)
        for key in (k.idx_all, k.idx_user(user_id), k.idx_pack(pack_id), k.idx_ids):
            pipe.zrem(key, cid)
        pipe.zrem(k.idx_exp, exp_member(cid, user_id, pack_id))
        await pipe.execute()

    async def user_members(self, user_id: str) -> list[str]:
        members = await self._client.zrange(self._keys.idx_user(user_id), 0, -1)
        return cast(list[str], members)

    async def collect_expired(self, *, limit: int = GC_BATCH) -> int:
        """Drop the index entries of conversations Redis has expired (their ref key is
        gone), at most `limit` per call, oldest expiry first. Returns how many."""
        k = self._keys
        cutoff_us = (int(time.time() * 1000) - self._grace_ms) * 1000
        members = cast(
            list[str],
            await self._client.zrange(
                k.idx_exp, "-inf", cutoff_us, byscore=True, offset=0, num=limit
            ),
        )
        if not members:
            return 0
        parsed = [(m, parse_exp_member(m)) for m in members]
        check: Any = self._client.pipeline(transaction=False)
        owners = [p for _, p in parsed if p is not None]
        for cid, _, _ in owners:
            check.exists(k.ref(cid))
        alive = dict(zip((o[0] for o in owners), await check.execute(), strict=True))
        pipe: Any = self._client.pipeline(transaction=False)
        gone = 0
        for member, owner in parsed:
            pipe.zrem(k.idx_exp, member)
            if owner is not None and not alive[owner[0]]:
                gone += 1
                cid, user, pack = owner
                for key in (k.idx_all, k.idx_user(user), k.idx_pack(pack), k.idx_ids):
                    pipe.zrem(key, cid)
        await pipe.execute()
        return gone

    # --- listing -----------------------------------------------------------------------

    async def scan(
        self,
        flt: ConversationFilter,
        *,
        now: datetime,
        limit: int,
        after: Position | None,
        fetch: Fetch,
    ) -> tuple[list[Conversation], str | None]:
        """One page of live conversations matching `flt` after `after`, and the cursor of
        the next page (None when nothing more can follow)."""
        source = await self._source(flt, after, limit + 1)
        found: list[Conversation] = []
        cleanup = _Cleanup()
        examined = 0
        last: Position | None = None
        more = False
        while True:
            batch = await source.next_batch(self.budget - examined)
            if batch is None:
                break
            convs = await fetch([cid for _, cid in batch]) if batch else []
            for (score, cid), c in zip(batch, convs, strict=True):
                examined += 1
                last = (score, cid)
                if self._accept(source.key, score, cid, c, flt, now, cleanup):
                    assert isinstance(c, Conversation)
                    found.append(c)
                    if len(found) > limit:
                        break
            if len(found) > limit:
                break
            if examined >= self.budget:
                more = True
                break
        await self._clean(cleanup)
        if len(found) > limit:
            return found[:limit], listing_cursor(found[limit - 1])
        if more and last is not None:
            return found, encode_cursor(from_us(last[0]).isoformat(), last[1])
        return found, None

    @staticmethod
    def _accept(
        key: str,
        score: int,
        cid: str,
        c: Conversation | Unreadable | None,
        flt: ConversationFilter,
        now: datetime,
        cleanup: _Cleanup,
    ) -> bool:
        if isinstance(c, Unreadable):
            return False  # logged by the decoder; left in place (and in the index)
        if c is None:
            cleanup.missing.append((key, cid, score))
            return False
        real = to_us(c.updated_at)
        if real != score:  # index write in flight, or lost: listed under its next write
            if real > score:
                cleanup.behind.append((key, cid, real))
            return False
        if c.expires_at is not None and c.expires_at <= now:
            return False
        return flt.matches(c)

    async def _source(self, flt: ConversationFilter, after: Position | None, size: int) -> _Source:
        k = self._keys
        if flt.user_id is not None:
            return _ZsetSource(self._client, k.idx_user(flt.user_id), after, size)
        if flt.pack_id is not None:
            return _ZsetSource(self._client, k.idx_pack(flt.pack_id), after, size)
        if flt.prefix:
            items = await self._prefix_items(flt.prefix, after)
            if items is not None:
                return _ListSource(k.idx_all, items, size)
        return _ZsetSource(self._client, k.idx_all, after, size)

    async def _prefix_items(self, prefix: str, after: Position | None) -> list[Position] | None:
        """Ids starting with `prefix` with their indexed updated_at, newest first; None if
        too many match (the caller then scans the global index instead)."""
        upper = prefix_upper_bound(prefix)
        lo, hi = f"[{prefix}", f"({upper}" if upper is not None else "+"
        count: int = await self._client.zlexcount(self._keys.idx_ids, lo, hi)
        if count > LEX_MAX:
            return None
        if count == 0:
            return []
        ids = cast(list[str], await self._client.zrange(self._keys.idx_ids, lo, hi, bylex=True))
        if not ids:
            return []
        scores: Sequence[float | None] = await self._client.zmscore(self._keys.idx_all, ids)
        items = [(int(s), cid) for cid, s in zip(ids, scores, strict=True) if s is not None]
        items.sort(reverse=True)
        return [p for p in items if after is None or p < after]

    async def _clean(self, cleanup: _Cleanup) -> None:
        """Lazily drop entries of conversations that are gone (unless re-scored since, or
        a create of that id is in flight: on a cluster its entries are written before the
        conversation) and move entries that lag behind their conversation forward."""
        missing = await self._not_in_flight(cleanup.missing)
        calls: list[Awaitable[Any]] = [
            self._scripts.zrem_if_not_above(keys=[key], args=[cid, score])
            for key, cid, score in missing
        ]
        if cleanup.behind:
            pipe: Any = self._client.pipeline(transaction=False)
            for key, cid, real in cleanup.behind:
                pipe.zadd(key, {cid: real}, gt=True)
            calls.append(pipe.execute())
        if calls:
            await asyncio.gather(*calls)

    async def _not_in_flight(
        self, missing: list[tuple[str, str, int]]
    ) -> list[tuple[str, str, int]]:
        """The entries of `missing` whose id has no fresh uncommitted claim."""
        if not missing:
            return []
        pipe: Any = self._client.pipeline(transaction=False)
        for _, cid, _ in missing:
            pipe.hmget(self._keys.ref(cid), ["s", "c"])
        now_ms = int(time.time() * 1000)
        claims = await pipe.execute()
        return [
            entry
            for entry, (committed, claimed) in zip(missing, claims, strict=True)
            if committed != "0" or now_ms - int(claimed or 0) >= CLAIM_TIMEOUT_MS
        ]
