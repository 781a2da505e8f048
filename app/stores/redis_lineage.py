"""Calls of the lineage scripts (create, update, touch, delete/reclaim) with their retry
loops. Each script runs atomically on the lineage's slot."""

from __future__ import annotations

import logging
from typing import Any, Literal, cast

from redis.exceptions import RedisError

from app.domain import Conversation
from app.errors import ConversationExists, ConversationNotFound, StoreUnavailable, VersionConflict
from app.stores.redis_codec import conversation_fields
from app.stores.redis_conn import UNAVAILABLE_ERRORS, RedisClient
from app.stores.redis_keys import LineageKeys, RedisKeys, exp_member, to_us, us_to_ms_ceil
from app.stores.redis_reclaim import Reclaimer
from app.stores.redis_scripts import Scripts

log = logging.getLogger("parley.stores.redis")
_INTERRUPTIONS: tuple[type[BaseException], ...] = (RedisError, OSError, *UNAVAILABLE_ERRORS)

ReclaimMode = Literal["any", "expired", "stale"]
_ATTEMPTS = 8
# Chunks of `Reclaimer.chunk` messages one deletion reclaims before returning; what is
# left (a very large lineage) is finished by the sweep, `SWEEP_LINEAGES` at a time.
RECLAIM_STEPS_PER_CALL = 20
SWEEP_LINEAGES = 8


def _flat(fields: dict[str, str]) -> list[str]:
    return [x for pair in fields.items() for x in pair]


def _exp_ms(c: Conversation) -> str:
    return "" if c.expires_at is None else str(us_to_ms_ceil(to_us(c.expires_at)))


class LineageOps:
    def __init__(
        self, client: RedisClient, keys: RedisKeys, scripts: Scripts, reclaimer: Reclaimer
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self.reclaimer = reclaimer

    async def create(self, c: Conversation, tok: str, index_keys: list[str]) -> None:
        """Write a conversation whose ref key the caller has claimed with `tok`, and its
        listing index entries when `index_keys` are given (`Indexes.script_keys`: one
        server only, the script then touches other slots).

        Left-overs under the same id in this lineage are reclaimed first: a hash without a
        ref (`LEFTOVER`, after a crash) or the messages of an incarnation Redis expired
        while other conversations kept the lineage alive (`STALE`)."""
        lk = self._keys.lineage(c.lineage_id)
        fields, _ = conversation_fields(c)
        exp_us = "" if c.expires_at is None else str(to_us(c.expires_at))
        member = exp_member(c.id, c.user_id, c.pack_id)
        args = [c.id, tok, _exp_ms(c), str(to_us(c.updated_at)), exp_us, member, *_flat(fields)]
        keys = [*lk.with_conversation(c.id), *index_keys]
        for _ in range(_ATTEMPTS):
            # Messages an earlier incarnation of this id left to a reclaim in progress
            # would count as the new one's (same writer id): finish that reclaim first.
            while not await self.collect(lk, max_steps=RECLAIM_STEPS_PER_CALL):
                pass
            reply = await self._scripts.create(keys=keys, args=args)
            if reply[0] == "OK":
                return
            if reply[0] == "LEFTOVER":
                await self.reclaim(lk, c.id, mode="any", tok=reply[1])
            else:
                await self.reclaim(lk, c.id, mode="stale")
        raise ConversationExists(f"Conversation {c.id!r} already exists.")

    async def update(
        self, new: Conversation, expected_version: int, index_keys: list[str]
    ) -> list[str]:
        """Replace the stored conversation by `new` (whose version is already
        `expected_version + 1`) if the stored version is `expected_version`, writing its
        index entries when `index_keys` are given (as for `create`).
        Returns [old user_id, old pack_id, expiry version, "1" if the expiry changed, tok]."""
        lk = self._keys.lineage(new.lineage_id)
        fields, absent = conversation_fields(new)
        exp_us = "" if new.expires_at is None else str(to_us(new.expires_at))
        member = exp_member(new.id, new.user_id, new.pack_id)
        args = [new.id, str(expected_version), _exp_ms(new), str(to_us(new.updated_at))]
        args += [exp_us, member, str(len(absent)), *absent]
        reply = await self._scripts.update(
            keys=[*lk.with_conversation(new.id), *index_keys, lk.sums, lk.ctx],
            args=[*args, *_flat(fields)],
        )
        if reply[0] == "NOTFOUND":
            raise ConversationNotFound(f"Conversation {new.id!r} not found.")
        if reply[0] == "CONFLICT":
            raise VersionConflict(
                f"Conversation {new.id!r} is at version {reply[1]}, not {expected_version}."
            )
        return [str(v) for v in reply[1:]]

    async def touch(self, lk: LineageKeys, cid: str, expires_us: int) -> list[str]:
        """Move the expiry; [expiry version, user_id, pack_id, tok], or [] if absent."""
        reply = await self._scripts.touch(
            keys=[*lk.with_conversation(cid), lk.sums, lk.ctx],
            args=[cid, expires_us, us_to_ms_ceil(expires_us)],
        )
        return [str(v) for v in reply]

    async def reclaim(
        self,
        lk: LineageKeys,
        cid: str,
        *,
        mode: ReclaimMode,
        tok: str = "",
        user: str = "",
        now_us: int = 0,
        ca: str = "",
        version: str = "",
    ) -> list[Any] | None:
        """Run the deletion script (see `redis_scripts_lineage.DELETE`: `ca` and `version`
        name the incarnation and version it must find); its reply when it did something
        or refused on the version ({3, stored version}), else None. The script needs the
        keys of every other conversation of the lineage; they are read first and checked
        by the script, which asks for a retry if the lineage changed in between. Then the
        messages left unreachable are reclaimed in chunks (`redis_reclaim`), up to
        `RECLAIM_STEPS_PER_CALL` of them; the lineage is marked pending first, so whatever
        is left is finished by the sweep."""
        mark = await self.reclaimer.mark(lk.lineage_id)
        reply = await self._delete(lk, cid, mode=mode, args=[str(now_us), tok, user, ca, version])
        try:
            done = await self.collect(lk, max_steps=RECLAIM_STEPS_PER_CALL)
        except _INTERRUPTIONS as exc:
            # the deletion itself stands; the mark makes the sweep finish the reclaim
            log.warning("reclaim of lineage %s interrupted: %r", lk.lineage_id, exc)
            return reply
        if done:
            await self.reclaimer.unmark(lk.lineage_id, mark)
        return reply

    async def collect(self, lk: LineageKeys, *, max_steps: int) -> bool:
        """Up to `max_steps` reclaim chunks; True when the lineage has nothing left."""
        for _ in range(max_steps):
            if await self.reclaimer.step(lk):
                return True
        return False

    async def finish_pending(self) -> int:
        """The sweep's part: continue the reclaims of up to `SWEEP_LINEAGES` marked
        lineages (a deleting process may have died); returns how many finished."""
        finished = 0
        for lineage_id, mark in await self.reclaimer.pending(SWEEP_LINEAGES):
            if await self.collect(self._keys.lineage(lineage_id), max_steps=RECLAIM_STEPS_PER_CALL):
                await self.reclaimer.unmark(lineage_id, mark)
                finished += 1
        return finished

    async def _delete(
        self, lk: LineageKeys, cid: str, *, mode: ReclaimMode, args: list[str]
    ) -> list[Any] | None:
        for _ in range(_ATTEMPTS):
            members = cast(list[str], await self._client.hkeys(lk.convs))
            others = [m for m in members if m != cid]
            keys = lk.with_conversation(cid)
            for other in others:
                keys += [lk.conv(other), lk.cps(other)]
            keys += [lk.ctx, lk.mrefs, lk.sums, lk.gc, lk.gct]
            reply: list[Any] = await self._scripts.delete(
                keys=keys, args=[cid, mode, *args, *others]
            )
            if reply[0] == -1:
                continue
            return reply if reply[0] != 0 else None
        raise StoreUnavailable(f"Lineage {lk.lineage_id!r} kept changing during a deletion.")
