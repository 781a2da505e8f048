"""`RedisStore`: the `redis://` / `redis+cluster://` `StateStore` (design notes, key layout
and consistency model in `app.stores.redis`). This module opens the store and holds
conversations, messages and expiry; the records attached to conversations (summaries,
checkpoints, context items, packs, media) are `redis_records.RedisRecords`'s."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from redis.asyncio.cluster import RedisCluster

from app.domain import Conversation, ConversationStatus, Message, Page, Usage
from app.domain.incarnation import Incarnation
from app.errors import StoreUnavailable
from app.stores.base import (
    ConversationFilter,
    DeletedConversation,
    StoreCapabilities,
)
from app.stores.redis_checkpoints import CheckpointOps
from app.stores.redis_conn import (
    ClientOptions,
    RedisClient,
    build_client,
    close_client,
    guarded,
    parse_redis_url,
    unavailable,
)
from app.stores.redis_context_items import ContextItemCalls, ContextItemOps
from app.stores.redis_conversations import ConversationOps
from app.stores.redis_index import Indexes
from app.stores.redis_keys import RedisKeys
from app.stores.redis_lineage import LineageOps
from app.stores.redis_media import MediaOps
from app.stores.redis_messages import MessageOps
from app.stores.redis_packs import PackOps
from app.stores.redis_parts import RedisParts
from app.stores.redis_reclaim import RECLAIM_CHUNK, Reclaimer
from app.stores.redis_records import RedisRecords
from app.stores.redis_refs import Directory
from app.stores.redis_scan import conversations_of_user
from app.stores.redis_scan import footprint as redis_footprint
from app.stores.redis_scripts import Scripts
from app.stores.redis_summaries import SummaryOps

REF_GRACE_MS = 60_000  # a ref key outlives its conversation by this much (see module doc)
_ERASE_CONCURRENCY = 8


class RedisStore(RedisRecords):
    capabilities = StoreCapabilities(native_ttl=True, shared=True)

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        options: ClientOptions | None = None,
        ref_grace_ms: int = REF_GRACE_MS,
        reclaim_chunk: int = RECLAIM_CHUNK,
    ) -> None:
        """`prefix` overrides the URL's `?prefix=`; `ref_grace_ms` is how long a ref key
        outlives its conversation (and index entries wait before being collected)."""
        self._target = parse_redis_url(url)
        self._grace_ms = ref_grace_ms
        self._reclaim_chunk = reclaim_chunk
        self.keys = RedisKeys(self._target.prefix if prefix is None else prefix)
        self._options = options or ClientOptions()
        self._parts: RedisParts | None = None

    @property
    def cluster(self) -> bool:
        return self._target.cluster

    @property
    def client(self) -> RedisClient:
        return self._p.client

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._parts is not None:
            return
        client = build_client(self._target, self._options)
        try:
            with unavailable():
                async with asyncio.timeout(self.call_timeout_s):
                    await client.ping()
        except BaseException:
            await close_client(client)
            raise
        scripts = Scripts.register(client)
        indexes = Indexes(client, self.keys, scripts, grace_ms=self._grace_ms)
        lineages = LineageOps(
            client, self.keys, scripts, Reclaimer(client, self.keys, chunk=self._reclaim_chunk)
        )
        directory = Directory(
            client, self.keys, scripts, lineages, indexes, grace_ms=self._grace_ms
        )
        media = MediaOps(client, self.keys)
        self._parts = RedisParts(
            client,
            scripts,
            indexes,
            lineages,
            directory,
            media,
            SummaryOps(client, self.keys),
            ContextItemCalls(ContextItemOps(client), directory),
            ConversationOps(
                client,
                cluster=self.cluster,
                indexes=indexes,
                lineages=lineages,
                directory=directory,
            ),
            MessageOps(
                client,
                self.keys,
                scripts,
                cluster=self.cluster,
                indexes=indexes,
                media=media,
                directory=directory,
            ),
            CheckpointOps(client, scripts, directory),
            PackOps(client, self.keys, scripts),
        )

    async def close(self) -> None:
        parts, self._parts = self._parts, None
        if parts is not None:
            await close_client(parts.client)

    @guarded
    async def ping(self) -> None:
        """PING; on a cluster every primary, since each holds a share of the lineages."""
        if self._parts is None:
            raise StoreUnavailable("The state store is not open.")
        client = self._parts.client
        if isinstance(client, RedisCluster):
            for node in client.get_primaries():  # one by one: no orphaned failed tasks
                await client.ping(target_nodes=node)
        else:
            await client.ping()

    # --- conversations -----------------------------------------------------------------

    @guarded
    async def create_conversation(self, conversation: Conversation) -> Conversation:
        return await self._p.conversations.create(conversation)

    @guarded
    async def get_conversation(self, conversation_id: str, *, now: datetime) -> Conversation | None:
        return await self._p.conversations.get(conversation_id, now=now)

    @guarded
    async def update_conversation(
        self, conversation: Conversation, *, expected_version: int
    ) -> Conversation:
        return await self._p.conversations.update(conversation, expected_version=expected_version)

    @guarded
    async def touch_conversation(self, conversation_id: str, expires_at: datetime) -> None:
        await self._p.conversations.touch(conversation_id, expires_at)

    @guarded
    async def delete_conversation(
        self,
        conversation_id: str,
        *,
        incarnation: Incarnation | None = None,
        expected_version: int | None = None,
    ) -> bool:
        deleted = await self._p.conversations.delete(
            conversation_id,
            user_id="",
            incarnation=incarnation,
            expected_version=expected_version,
        )
        return deleted is not None

    async def _delete(self, cid: str, *, user_id: str) -> DeletedConversation | None:
        """The deleted conversation (None: nothing deleted)."""
        return await self._p.conversations.delete(cid, user_id=user_id)

    async def delete_user_conversations(self, user_id: str) -> list[DeletedConversation]:
        """Not bounded as a whole (a user may have many conversations): each step is.
        Deletions run `_ERASE_CONCURRENCY` at a time (forks of one lineage retry).

        Complete even when an index entry was lost: the candidates are the user index's
        members plus every conversation hash whose `user` is this user, found by a SCAN
        of the conversation hashes (`redis_scan.conversations_of_user`, O(keys))."""
        indexed = await self._user_members(user_id)
        scanned = await self._scanned_members(user_id)
        candidates = sorted(set(indexed) | set(scanned))
        gate = asyncio.Semaphore(_ERASE_CONCURRENCY)

        async def one(cid: str) -> DeletedConversation | None:
            async with gate:
                return await self._delete_of_user(cid, user_id)

        done = await asyncio.gather(*(one(cid) for cid in candidates))
        return [d for d in done if d is not None]

    @guarded
    async def _user_members(self, user_id: str) -> list[str]:
        return await self._p.indexes.user_members(user_id)

    async def _scanned_members(self, user_id: str) -> list[str]:
        """Not cut at the call timeout as a whole (a SCAN of every key); each command is
        bounded by the client's socket timeout."""
        with unavailable():
            return await conversations_of_user(self._p.client, self.keys, user_id)

    @guarded
    async def footprint(self, lineage_id: str, conversation_ids: Sequence[str]) -> dict[str, int]:
        return await redis_footprint(
            self._p.client, self.keys, self.keys.lineage(lineage_id), conversation_ids
        )

    @guarded
    async def _delete_of_user(self, cid: str, user_id: str) -> DeletedConversation | None:
        return await self._delete(cid, user_id=user_id)

    @guarded
    async def list_conversations(
        self,
        flt: ConversationFilter,
        *,
        now: datetime,
        limit: int,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        return await self._p.conversations.list(flt, now=now, limit=limit, cursor=cursor)

    # --- messages ----------------------------------------------------------------------

    @guarded
    async def append_messages(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        *,
        usage: Usage,
        cost_usd: float,
        now: datetime,
        status: ConversationStatus | None = None,
    ) -> Conversation:
        return await self._p.messages.append(
            conversation, messages, usage=usage, cost_usd=cost_usd, now=now, status=status
        )

    @guarded
    async def get_messages(self, lineage_id: str, message_ids: Sequence[str]) -> list[Message]:
        return await self._p.messages.get(lineage_id, message_ids)

    @guarded
    async def get_path(self, lineage_id: str, message_id: str, *, limit: int) -> list[Message]:
        return await self._p.messages.path(lineage_id, message_id, limit=limit)

    @guarded
    async def ancestor_id(self, lineage_id: str, message_id: str, *, steps: int) -> str | None:
        return await self._p.messages.ancestor(lineage_id, message_id, steps=steps)

    @guarded
    async def list_children(self, lineage_id: str, parent_id: str | None) -> list[Message]:
        return await self._p.messages.children(lineage_id, parent_id)

    # --- expiry ------------------------------------------------------------------------

    @guarded
    async def purge_expired(self, *, now: datetime) -> int:
        """Redis expires conversations itself (`capabilities.native_ttl`): nothing to
        reclaim. Only drops index entries the expiry left behind and finishes chunked
        reclaims a dying process left (`redis_reclaim`); returns 0."""
        await self._p.indexes.collect_expired()
        await self._p.lineages.finish_pending()
        return 0
