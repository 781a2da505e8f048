"""The records attached to conversations in `MemoryStore` (`app.stores.memory`):
checkpoints, summaries, context items, uploaded packs and media records.

Same rules as the store: no await in the middle of a method, models copied in and out.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from app.domain import Checkpoint, Conversation
from app.domain.context_item import ContextItem
from app.domain.incarnation import Incarnation
from app.domain.media import MediaRecord
from app.domain.summary import Summary
from app.errors import Conflict, ContextItemsFull, ConversationNotFound, MessageNotFound
from app.stores.base import StateStore
from app.stores.memory_lineage import Lineage
from app.stores.memory_media import MemoryMedia


class MemoryRecords(StateStore):
    """Checkpoints, context items (per conversation), summaries (in the lineage), packs
    and media; the conversations and lineages are `MemoryStore`'s."""

    _conversations: dict[str, Conversation]
    _lineages: dict[str, Lineage]

    def __init__(self) -> None:
        self._checkpoints: dict[str, dict[str, Checkpoint]] = {}
        self._context_items: dict[str, dict[str, ContextItem]] = {}
        self._packs: dict[tuple[str, str], dict[str, Any]] = {}
        self._media = MemoryMedia()

    # --- checkpoints -------------------------------------------------------------------

    async def create_checkpoint(
        self, checkpoint: Checkpoint, *, incarnation: Incarnation | None = None
    ) -> Checkpoint:
        self._require(checkpoint.conversation_id, incarnation)
        per_conversation = self._checkpoints.setdefault(checkpoint.conversation_id, {})
        if checkpoint.id in per_conversation:
            raise Conflict(f"Checkpoint {checkpoint.id!r} already exists.")
        per_conversation[checkpoint.id] = checkpoint.model_copy(deep=True)
        return checkpoint.model_copy(deep=True)

    async def list_checkpoints(
        self, conversation_id: str, *, kind: str | None = None
    ) -> list[Checkpoint]:
        found = [
            cp
            for cp in self._checkpoints.get(conversation_id, {}).values()
            if kind is None or cp.kind == kind
        ]
        found.sort(key=lambda cp: (cp.created_at, cp.id))
        return [cp.model_copy(deep=True) for cp in found]

    async def get_checkpoint(self, conversation_id: str, checkpoint_id: str) -> Checkpoint | None:
        cp = self._checkpoints.get(conversation_id, {}).get(checkpoint_id)
        return cp.model_copy(deep=True) if cp is not None else None

    async def delete_checkpoint(self, conversation_id: str, checkpoint_id: str) -> bool:
        return self._checkpoints.get(conversation_id, {}).pop(checkpoint_id, None) is not None

    # --- summaries ----------------------------------------------------------------------

    async def save_summary(self, summary: Summary) -> Summary:
        lineage = self._lineages.get(summary.lineage_id)
        if lineage is None or summary.covers_message_id not in lineage.messages:
            raise MessageNotFound(f"Message {summary.covers_message_id!r} not found.")
        if summary.id in lineage.summaries:
            raise Conflict(f"Summary {summary.id!r} already exists.")
        lineage.summaries[summary.id] = summary.model_copy(deep=True)
        return summary.model_copy(deep=True)

    async def list_summaries(self, lineage_id: str) -> list[Summary]:
        lineage = self._lineages.get(lineage_id)
        found = list(lineage.summaries.values()) if lineage is not None else []
        found.sort(key=lambda s: (s.created_at, s.id))
        return [s.model_copy(deep=True) for s in found]

    async def delete_summary(self, lineage_id: str, summary_id: str) -> bool:
        lineage = self._lineages.get(lineage_id)
        return lineage is not None and lineage.summaries.pop(summary_id, None) is not None

    # --- context items ------------------------------------------------------------------

    async def save_context_item(
        self,
        item: ContextItem,
        *,
        max_items: int | None = None,
        incarnation: Incarnation | None = None,
    ) -> ContextItem:
        # no await between the count and the insert: atomic on the event loop
        self._require(item.conversation_id, incarnation)
        per_conversation = self._context_items.setdefault(item.conversation_id, {})
        if item.id in per_conversation:
            raise Conflict(f"Context item {item.id!r} already exists.")
        if max_items is not None and len(per_conversation) >= max_items:
            raise ContextItemsFull(f"The conversation already has {max_items} context items.")
        per_conversation[item.id] = item.model_copy(deep=True)
        return item.model_copy(deep=True)

    async def list_context_items(self, conversation_id: str) -> list[ContextItem]:
        found = list(self._context_items.get(conversation_id, {}).values())
        found.sort(key=lambda i: (i.created_at, i.id))
        return [i.model_copy(deep=True) for i in found]

    async def delete_context_item(self, conversation_id: str, item_id: str) -> bool:
        return self._context_items.get(conversation_id, {}).pop(item_id, None) is not None

    async def delete_context_items(self, conversation_id: str) -> int:
        return len(self._context_items.pop(conversation_id, {}))

    # --- uploaded packs ----------------------------------------------------------------

    async def save_pack(
        self, pack_id: str, version: str, document: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        stored = self._packs.get((pack_id, version))
        if stored is not None:
            return copy.deepcopy(stored), False
        self._packs[(pack_id, version)] = copy.deepcopy(document)
        return copy.deepcopy(document), True

    async def list_packs(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in self._packs.values()]

    async def pack_count(self) -> int:
        return len(self._packs)

    # --- media records and references (`app.stores.memory_media`) ----------------------

    async def save_media(self, record: MediaRecord) -> MediaRecord:
        return self._media.save(record)

    async def get_media(self, media_id: str) -> MediaRecord | None:
        return self._media.get(media_id)

    async def mark_media_attached(self, media_ids: Sequence[str], *, retain: bool) -> None:
        self._media.mark_attached(media_ids, retain=retain)

    async def media_in_use(self, sha256: str) -> bool:
        return self._media.in_use(sha256)

    async def lineage_media_ids(self, lineage_id: str) -> list[str]:
        return self._media.lineage_ids(lineage_id)

    async def collect_media(
        self, media_ids: Sequence[str], *, force: bool = False
    ) -> list[MediaRecord]:
        return self._media.collect(media_ids, force=force)

    async def user_media_ids(self, user_id: str) -> list[str]:
        return self._media.user_ids(user_id)

    async def collectable_media_ids(self, *, limit: int) -> list[str]:
        return self._media.collectable_ids(limit=limit)

    def _found(self, conversation_id: str, incarnation: Incarnation | None) -> Conversation | None:
        """The stored conversation if it is `incarnation` (None: any)."""
        stored = self._conversations.get(conversation_id)
        if stored is None or (incarnation is not None and not incarnation.holds(stored)):
            return None
        return stored

    def _require(self, conversation_id: str, incarnation: Incarnation | None) -> None:
        if self._found(conversation_id, incarnation) is None:
            raise ConversationNotFound(f"Conversation {conversation_id!r} not found.")
