"""`RedisStore`: the `redis://` / `redis+cluster://` `StateStore` (design notes, key layout
and consistency model in `app.stores.redis`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio.cluster import RedisCluster

from app.domain import Checkpoint, Conversation, ConversationStatus, Message, Page, Usage
from app.domain.context_item import ContextItem
from app.domain.incarnation import Incarnation
from app.domain.media import MediaRecord
from app.domain.summary import Summary
from app.errors import StoreUnavailable
from app.stores.base import (
    ConversationFilter,
    DeletedConversation,
    StateStore,
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
from app.stores.redis_reclaim import RECLAIM_CHUNK, Reclaimer
from app.stores.redis_refs import Directory
from app.stores.redis_scan import conversations_of_user
from app.stores.redis_scan import footprint as redis_footprint
from app.stores.redis_scripts import Scripts
from app.stores.redis_summaries import SummaryOps

REF_GRACE_MS = 60_000  # a ref key outlives its conversation by this much (see module doc)
_ERASE_CONCURRENCY = 8


@dataclass(frozen=True)
class _Parts:
    """What `open()` builds."""

    client: RedisClient
    scripts: Scripts
    indexes: Indexes
    lineages: LineageOps
    directory: Directory
    media: MediaOps
    summaries: SummaryOps
    context_items: ContextItemCalls
    conversations: ConversationOps
    messages: MessageOps
    checkpoints: CheckpointOps
    packs: PackOps


class RedisStore(StateStore):
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
        self._parts: _Parts | None = None

    @property
    def call_timeout_s(self) -> float | None:
        """Every store call is cut here (`redis_conn.guarded`)."""
        return self._options.call_timeout_s

    @property
    def cluster(self) -> bool:
        return self._target.cluster

    @property
    def _p(self) -> _Parts:
        if self._parts is None:
            raise RuntimeError("RedisStore.open() has not been called")
        return self._parts

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
        self._parts = _Parts(
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

    # --- summaries ----------------------------------------------------------------------

    @guarded
    async def save_summary(self, summary: Summary) -> Summary:
        await self._p.summaries.save(summary)
        return summary.model_copy(deep=True)

    @guarded
    async def list_summaries(self, lineage_id: str) -> list[Summary]:
        return await self._p.summaries.of_lineage(lineage_id)

    @guarded
    async def delete_summary(self, lineage_id: str, summary_id: str) -> bool:
        return await self._p.summaries.delete(lineage_id, summary_id)

    # --- checkpoints -------------------------------------------------------------------

    @guarded
    async def create_checkpoint(
        self, checkpoint: Checkpoint, *, incarnation: Incarnation | None = None
    ) -> Checkpoint:
        return await self._p.checkpoints.create(checkpoint, incarnation=incarnation)

    @guarded
    async def list_checkpoints(
        self, conversation_id: str, *, kind: str | None = None
    ) -> list[Checkpoint]:
        return await self._p.checkpoints.list(conversation_id, kind=kind)

    @guarded
    async def get_checkpoint(self, conversation_id: str, checkpoint_id: str) -> Checkpoint | None:
        return await self._p.checkpoints.get(conversation_id, checkpoint_id)

    @guarded
    async def delete_checkpoint(self, conversation_id: str, checkpoint_id: str) -> bool:
        return await self._p.checkpoints.delete(conversation_id, checkpoint_id)

    # --- context items ------------------------------------------------------------------

    @guarded
    async def save_context_item(
        self,
        item: ContextItem,
        *,
        max_items: int | None = None,
        incarnation: Incarnation | None = None,
    ) -> ContextItem:
        return await self._p.context_items.save(item, max_items=max_items, incarnation=incarnation)

    @guarded
    async def list_context_items(self, conversation_id: str) -> list[ContextItem]:
        return await self._p.context_items.of_conversation(conversation_id)

    @guarded
    async def delete_context_item(self, conversation_id: str, item_id: str) -> bool:
        return await self._p.context_items.delete(conversation_id, item_id)

    @guarded
    async def delete_context_items(self, conversation_id: str) -> int:
        return await self._p.context_items.delete_all(conversation_id)

    # --- uploaded packs ----------------------------------------------------------------

    @guarded
    async def save_pack(
        self, pack_id: str, version: str, document: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        return await self._p.packs.save(pack_id, version, document)

    @guarded
    async def list_packs(self) -> list[dict[str, Any]]:
        return await self._p.packs.list()

    @guarded
    async def pack_count(self) -> int:
        return await self._p.packs.count()

    # --- media records and references (protocol in `redis_media`) -------------------------

    @guarded
    async def save_media(self, record: MediaRecord) -> MediaRecord:
        return await self._p.media.save(record)

    @guarded
    async def get_media(self, media_id: str) -> MediaRecord | None:
        return await self._p.media.get(media_id)

    @guarded
    async def mark_media_attached(self, media_ids: Sequence[str], *, retain: bool) -> None:
        await self._p.media.mark_attached(media_ids, retain)

    @guarded
    async def media_in_use(self, sha256: str) -> bool:
        return await self._p.media.in_use(sha256)

    @guarded
    async def lineage_media_ids(self, lineage_id: str) -> list[str]:
        return await self._p.media.lineage_ids(lineage_id)

    @guarded
    async def collect_media(
        self, media_ids: Sequence[str], *, force: bool = False
    ) -> list[MediaRecord]:
        deleted = []
        for media_id in dict.fromkeys(media_ids):
            found = await self._p.media.collect_one(media_id, force=force)
            if found is not None:
                deleted.append(found)
        return deleted

    @guarded
    async def user_media_ids(self, user_id: str) -> list[str]:
        return await self._p.media.user_ids(user_id)

    @guarded
    async def collectable_media_ids(self, *, limit: int) -> list[str]:
        return await self._p.media.collectable(limit)

    # --- expiry ------------------------------------------------------------------------

    @guarded
    async def purge_expired(self, *, now: datetime) -> int:
        """Redis expires conversations itself (`capabilities.native_ttl`): nothing to
        reclaim. Only drops index entries the expiry left behind and finishes chunked
        reclaims a dying process left (`redis_reclaim`); returns 0."""
        await self._p.indexes.collect_expired()
        await self._p.lineages.finish_pending()
        return 0
