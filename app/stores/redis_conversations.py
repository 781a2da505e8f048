"""Conversations in the Redis store: create, get, update, touch, delete, list.

The calls behind `RedisStore`'s conversation methods (key layout, the ref/claim protocol
and the index consistency model in `app.stores.redis`). Separate from `redis_store` (the
`StateStore` seam: timeouts, lifecycle, delegation) so each kind of record has its own
module; erasure of a user's conversations stays in the store, which bounds each step.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from typing import Any, cast

from redis.exceptions import RedisError

from app.domain import Conversation, Page
from app.domain.incarnation import Incarnation
from app.errors import ConversationExists, VersionConflict
from app.stores._common import parse_listing_cursor
from app.stores.base import ConversationFilter, DeletedConversation
from app.stores.redis_after_commit import after_commit
from app.stores.redis_codec import conversation_from_fields
from app.stores.redis_conn import RedisClient
from app.stores.redis_index import Indexes
from app.stores.redis_keys import LineageKeys, from_us, to_us
from app.stores.redis_lineage import LineageOps
from app.stores.redis_refs import Directory


class ConversationOps:
    def __init__(
        self,
        client: RedisClient,
        *,
        cluster: bool,
        indexes: Indexes,
        lineages: LineageOps,
        directory: Directory,
    ) -> None:
        self._client = client
        self._cluster = cluster
        self._indexes = indexes
        self._lineages = lineages
        self._directory = directory

    async def create(self, conversation: Conversation) -> Conversation:
        c = conversation
        tok = uuid.uuid4().hex
        if not await self._directory.claim(c, tok):
            raise ConversationExists(f"Conversation {c.id!r} already exists.")
        try:
            if self._cluster:
                # Index entries live in other slots: written first, so an acknowledged
                # create is listed and erased (a failed create leaves only entries that
                # listing skips and drops). On one server they join the create script.
                await self._indexes.write(c)
                await self._lineages.create(c, tok, [])
            else:
                await self._lineages.create(c, tok, self._indexes.script_keys(c))
        except BaseException:
            # Free the id for a retry; if Redis is gone too, the claim expires by itself
            # (an uncommitted claim is abandoned after `redis_refs.CLAIM_TIMEOUT_MS`).
            with contextlib.suppress(RedisError, OSError):
                await self._directory.release(c.id, tok)
            raise
        self._directory.remember(c.id, c.lineage_id)
        expires_us = to_us(c.expires_at) if c.expires_at is not None else None
        await after_commit(
            self._directory.mirror(c.id, tok, "0", expires_us),
            self._indexes.collect_expired(),
        )
        return c.model_copy(deep=True)

    async def get(self, conversation_id: str, *, now: datetime) -> Conversation | None:
        async def load(lk: LineageKeys) -> dict[str, str] | None:
            fields = cast(dict[str, str], await self._client.hgetall(lk.conv(conversation_id)))
            return fields or None

        fields = await self._directory.on_lineage(conversation_id, load)
        if fields is None:
            return None
        c = conversation_from_fields(fields)
        if c.expires_at is not None and c.expires_at <= now:
            return None
        return c

    async def update(self, conversation: Conversation, *, expected_version: int) -> Conversation:
        new = conversation.model_copy(deep=True, update={"version": expected_version + 1})
        index_keys = [] if self._cluster else self._indexes.script_keys(new)
        result = await self._lineages.update(new, expected_version, index_keys)
        old_user, old_pack, ev, changed, tok = result
        self._directory.remember(new.id, new.lineage_id)
        expires_us = to_us(new.expires_at) if new.expires_at is not None else None
        tasks = [self._indexes.write(new, previous=(old_user, old_pack))]
        if changed == "1":
            tasks.append(self._directory.mirror(new.id, tok, ev, expires_us))
        await after_commit(*tasks)
        return new.model_copy(deep=True)

    async def touch(self, conversation_id: str, expires_at: datetime) -> None:
        exp_us = to_us(expires_at)

        async def touch(lk: LineageKeys) -> list[str] | None:
            return await self._lineages.touch(lk, conversation_id, exp_us) or None

        result = await self._directory.on_lineage(conversation_id, touch)
        if result is None:
            return
        ev, user, pack, tok = result
        await after_commit(
            self._directory.mirror(conversation_id, tok, ev, exp_us),
            self._indexes.set_expiry(conversation_id, user, pack, exp_us),
        )

    async def delete(
        self,
        cid: str,
        *,
        user_id: str,
        incarnation: Incarnation | None = None,
        expected_version: int | None = None,
    ) -> DeletedConversation | None:
        """The deleted conversation (None: nothing deleted; `StateStore.delete_conversation`
        for `incarnation` and `expected_version`)."""
        deleted_from: list[str] = []
        ca = "" if incarnation is None else str(to_us(incarnation.created_at))
        version = "" if expected_version is None else str(expected_version)

        async def reclaim(lk: LineageKeys) -> list[Any] | None:
            if incarnation is not None and lk.lineage_id != incarnation.lineage_id:
                return None  # another conversation's lineage is under the id now
            reply = await self._lineages.reclaim(
                lk, cid, mode="any", user=user_id, ca=ca, version=version
            )
            if reply:
                deleted_from.append(lk.lineage_id)
            return reply

        info = await self._directory.on_lineage(cid, reclaim)
        if info is None:
            return None
        if info[0] == 3:
            raise VersionConflict(
                f"Conversation {cid!r} is at version {info[1]}, not {expected_version}."
            )
        _, user, pack, tok, created_us = info
        # Indexes first, the ref last: a new conversation with this id can only be
        # created once the ref is gone, so these removals never hit its entries.
        await after_commit(self._indexes.remove(cid, user, pack))
        await after_commit(self._directory.release(cid, tok))
        created = from_us(int(created_us)) if created_us else None  # (None: hash from before `ca`)
        return DeletedConversation(cid, deleted_from[-1], created)

    async def list(
        self,
        flt: ConversationFilter,
        *,
        now: datetime,
        limit: int,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        after = None
        if cursor is not None:
            when, after_id = parse_listing_cursor(cursor)
            after = (to_us(when), after_id)
        data, next_cursor = await self._indexes.scan(
            flt, now=now, limit=limit, after=after, fetch=self._directory.fetch_many
        )
        return Page(data=data, next_cursor=next_cursor)
