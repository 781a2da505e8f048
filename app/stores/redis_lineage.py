"""Calls of the lineage scripts (create, update, touch, delete/reclaim) with their retry
loops. Each script runs atomically on the lineage's slot."""

from __future__ import annotations

from typing import Any, Literal, cast

from app.domain import Conversation
from app.errors import ConversationExists, ConversationNotFound, StoreUnavailable, VersionConflict
from app.stores.redis_codec import conversation_fields
from app.stores.redis_conn import RedisClient
from app.stores.redis_keys import LineageKeys, RedisKeys, exp_member, to_us, us_to_ms_ceil
from app.stores.redis_scripts import Scripts

ReclaimMode = Literal["any", "expired", "stale"]
_ATTEMPTS = 8


def _flat(fields: dict[str, str]) -> list[str]:
    return [x for pair in fields.items() for x in pair]


def _exp_ms(c: Conversation) -> str:
    return "" if c.expires_at is None else str(us_to_ms_ceil(to_us(c.expires_at)))


class LineageOps:
    def __init__(self, client: RedisClient, keys: RedisKeys, scripts: Scripts) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts

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
            keys=[*lk.with_conversation(new.id), *index_keys], args=[*args, *_flat(fields)]
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
            keys=[*lk.with_conversation(cid), lk.sums],
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
    ) -> list[Any] | None:
        """Run the deletion script (see `redis_scripts.DELETE`); its reply when it did
        something, else None. The script needs the keys of every other conversation of the
        lineage; they are read first and checked by the script, which asks for a retry if
        the lineage changed in between."""
        for _ in range(_ATTEMPTS):
            members = cast(list[str], await self._client.hkeys(lk.convs))
            others = [m for m in members if m != cid]
            keys = lk.with_conversation(cid)
            for other in others:
                keys += [lk.conv(other), lk.cps(other)]
            keys += [lk.mrefs, lk.sums]
            reply: list[Any] = await self._scripts.delete(
                keys=keys, args=[cid, mode, now_us, tok, user, *others]
            )
            if reply[0] == -1:
                continue
            return reply if reply[0] != 0 else None
        raise StoreUnavailable(f"Lineage {lk.lineage_id!r} kept changing during a deletion.")
