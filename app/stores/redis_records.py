"""The records attached to conversations in `RedisStore` (`app.stores.redis_store`):
summaries, checkpoints, context items, uploaded packs and media records, each call made
on the opened store's parts (`RedisParts`) and cut at its call timeout (`guarded`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.domain import Checkpoint
from app.domain.context_item import ContextItem
from app.domain.incarnation import Incarnation
from app.domain.media import MediaRecord
from app.domain.summary import Summary
from app.stores.base import StateStore
from app.stores.redis_conn import ClientOptions, guarded
from app.stores.redis_parts import RedisParts


class RedisRecords(StateStore):
    """`_options` and `_parts` (None until `open()`) are set by `RedisStore`."""

    _options: ClientOptions
    _parts: RedisParts | None

    @property
    def call_timeout_s(self) -> float | None:
        """Every store call is cut here (`redis_conn.guarded`)."""
        return self._options.call_timeout_s

    @property
    def _p(self) -> RedisParts:
        if self._parts is None:
            raise RuntimeError("RedisStore.open() has not been called")
        return self._parts

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
