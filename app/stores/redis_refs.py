"""Conversation id -> lineage: the ref keys (`P ref:{<id>}`), their in-process cache, and
the claim protocol that makes `create_conversation` first-writer-wins across lineages
(see "Operations" in `app.stores.redis`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar, cast

from app.domain import Conversation, utcnow
from app.stores._common import Unreadable, decode_listed
from app.stores.redis_codec import conversation_from_fields
from app.stores.redis_conn import RedisClient
from app.stores.redis_index import CLAIM_TIMEOUT_MS, Indexes
from app.stores.redis_keys import LineageKeys, RedisKeys, to_us, us_to_ms_ceil
from app.stores.redis_lineage import LineageOps
from app.stores.redis_scripts import Scripts

T = TypeVar("T")

__all__ = ["CLAIM_TIMEOUT_MS", "Directory"]  # an older uncommitted claim was abandoned
CACHE_MAX = 10_000
_ATTEMPTS = 8


def _now_ms() -> int:
    return int(time.time() * 1000)


class Directory:
    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys,
        scripts: Scripts,
        lineages: LineageOps,
        indexes: Indexes,
        *,
        grace_ms: int,
        cache_max: int = CACHE_MAX,
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._ops = lineages
        self._indexes = indexes
        self._grace_ms = grace_ms
        # conversation id -> lineage id. A conversation never changes lineage while it
        # exists; a cached lineage that finds nothing re-reads the ref (`on_lineage`).
        # At most `cache_max` ids (oldest remembered go first): a miss is one HGET.
        self._cache: dict[str, str] = {}
        self._cache_max = cache_max

    # --- lookup ------------------------------------------------------------------------

    def remember(self, cid: str, lineage_id: str) -> None:
        if cid not in self._cache and len(self._cache) >= self._cache_max:
            self._cache.pop(next(iter(self._cache)))
        self._cache[cid] = lineage_id

    def forget(self, cid: str) -> None:
        self._cache.pop(cid, None)

    async def read(self, cid: str) -> str | None:
        lineage = cast(str | None, await self._client.hget(self._keys.ref(cid), "l"))
        if lineage is None:
            self.forget(cid)
        else:
            self.remember(cid, lineage)
        return lineage

    async def on_lineage(
        self, cid: str, op: Callable[[LineageKeys], Awaitable[T | None]]
    ) -> T | None:
        """Run `op` on the lineage of conversation `cid` (one round trip when cached). If
        a cached lineage gives nothing (falsy), the ref is re-read in case the id was
        deleted and created again in another lineage."""
        cached = self._cache.get(cid)
        lineage = cached if cached is not None else await self.read(cid)
        if lineage is None:
            return None
        result = await op(self._keys.lineage(lineage))
        if result or cached is None:
            return result
        fresh = await self.read(cid)
        if fresh is None or fresh == lineage:
            return result
        return await op(self._keys.lineage(fresh))

    async def fetch_many(self, cids: list[str]) -> list[Conversation | Unreadable | None]:
        """Conversations by id, for listing: one pipelined HGETALL round trip when the
        lineages are cached (plus ref reads for unknown or stale cache entries)."""
        lineages = {cid: self._cache.get(cid) for cid in cids}
        unknown = [cid for cid, lineage in lineages.items() if lineage is None]
        found: dict[str, dict[str, str]] = {}
        for attempt in range(2):
            if unknown:
                pipe: Any = self._client.pipeline(transaction=False)
                for cid in unknown:
                    pipe.hget(self._keys.ref(cid), "l")
                for cid, lineage in zip(unknown, await pipe.execute(), strict=True):
                    lineages[cid] = lineage
                    if lineage is not None:
                        self.remember(cid, lineage)
            todo = [
                (cid, lineage)
                for cid, lineage in lineages.items()
                if lineage is not None and cid not in found and (attempt == 0 or cid in unknown)
            ]
            if not todo:
                break
            pipe = self._client.pipeline(transaction=False)
            for cid, lineage in todo:
                pipe.hgetall(self._keys.lineage(lineage).conv(cid))
            rows = await pipe.execute()
            found.update((cid, row) for (cid, _), row in zip(todo, rows, strict=True) if row)
            was_unknown = set(unknown)
            unknown = [cid for cid, _ in todo if cid not in found and cid not in was_unknown]
            if not unknown:
                break
        return [
            decode_listed(cid, partial(conversation_from_fields, found[cid]))
            if cid in found
            else None
            for cid in cids
        ]

    # --- the ref's lifecycle -------------------------------------------------------------

    async def claim(self, c: Conversation, tok: str) -> bool:
        """Claim the id of `c` for incarnation `tok`. False if a live conversation has
        it, or another creator claimed it a moment ago (either way: it exists)."""
        for _ in range(_ATTEMPTS):
            reply = await self._scripts.claim(
                keys=[self._keys.ref(c.id)], args=[c.lineage_id, tok, _now_ms()]
            )
            if reply[0] == "OK":
                return True
            _, lineage0, tok0, claimed_ms, committed = reply
            if await self._holds(c.id, lineage0, tok0, int(claimed_ms), committed == "1"):
                return False
        return False

    async def _holds(
        self, cid: str, lineage_id: str, tok: str, claimed_ms: int, committed: bool
    ) -> bool:
        """Whether a taken ref still stands for a live (or being created) conversation.
        If not, reclaim what is left of that conversation and release the ref."""
        lk = self._keys.lineage(lineage_id)
        stored_tok, exp = await self._client.hmget(lk.conv(cid), ["tok", "exp"])
        now_us = to_us(utcnow())
        if stored_tok == tok:
            if exp is None or int(exp) > now_us:
                return True
            info = await self._ops.reclaim(lk, cid, mode="expired", tok=tok, now_us=now_us)
            if info is None:  # touched or deleted meanwhile: look again
                return False
            await self._indexes.remove(cid, info[1], info[2])
        elif not committed and _now_ms() - claimed_ms < CLAIM_TIMEOUT_MS:
            return True  # being created right now
        await self.release(cid, tok)
        return False

    async def release(self, cid: str, tok: str) -> None:
        """Delete the ref if it still belongs to incarnation `tok`."""
        await self._scripts.release(keys=[self._keys.ref(cid)], args=[tok])
        self.forget(cid)

    async def mirror(self, cid: str, tok: str, ev: str, expires_us: int | None) -> None:
        """Give the ref the conversation's expiry plus the grace period and mark the claim
        committed; the expiry version `ev` orders concurrent mirrors."""
        ms = "" if expires_us is None else str(us_to_ms_ceil(expires_us) + self._grace_ms)
        await self._scripts.mirror(keys=[self._keys.ref(cid)], args=[tok, ev, ms])
