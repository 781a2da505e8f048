"""`memory://`: an in-process `StateStore` for tests and throwaway runs.

Every method does its work without awaiting in the middle, so on one event loop each call is
atomic by construction and no lock is needed. Models are copied on the way in and out, so a
caller mutating what it passed or got back cannot change stored state.

This module holds conversations, messages, expiry and deletion; `MemoryStore` inherits the
records attached to conversations (checkpoints, summaries, context items, packs, media)
from `memory_records.MemoryRecords`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from app.domain import (
    Conversation,
    ConversationStatus,
    Message,
    Page,
    Usage,
    utcnow,
)
from app.domain.incarnation import Incarnation, same_incarnation
from app.errors import (
    Conflict,
    ConversationExists,
    ConversationNotFound,
    HeadConflict,
    MediaNotFound,
    VersionConflict,
)
from app.stores._common import listing_cursor, parse_listing_cursor
from app.stores.base import (
    ConversationFilter,
    DeletedConversation,
    StoreCapabilities,
    media_references,
)
from app.stores.memory_lineage import Lineage, unreachable
from app.stores.memory_records import MemoryRecords


def _live(conversation: Conversation, now: datetime) -> bool:
    return conversation.expires_at is None or conversation.expires_at > now


class MemoryStore(MemoryRecords):
    capabilities = StoreCapabilities(native_ttl=False, shared=False)

    def __init__(self) -> None:
        super().__init__()
        self._conversations = {}
        self._lineages = {}

    async def ping(self) -> None:
        return None

    # --- conversations -----------------------------------------------------------------

    async def create_conversation(self, conversation: Conversation) -> Conversation:
        existing = self._conversations.get(conversation.id)
        if existing is not None:
            if _live(existing, utcnow()):
                raise ConversationExists(f"Conversation {conversation.id!r} already exists.")
            self._reclaim(conversation.id)
        self._conversations[conversation.id] = conversation.model_copy(deep=True)
        return conversation.model_copy(deep=True)

    async def get_conversation(self, conversation_id: str, *, now: datetime) -> Conversation | None:
        c = self._conversations.get(conversation_id)
        if c is None or not _live(c, now):
            return None
        return c.model_copy(deep=True)

    async def update_conversation(
        self, conversation: Conversation, *, expected_version: int
    ) -> Conversation:
        stored = self._conversations.get(conversation.id)
        if stored is None or not same_incarnation(stored, conversation):  # not a namesake
            raise ConversationNotFound(f"Conversation {conversation.id!r} not found.")
        if stored.version != expected_version:
            raise VersionConflict(
                f"Conversation {conversation.id!r} is at version {stored.version}, "
                f"not {expected_version}."
            )
        new = conversation.model_copy(deep=True, update={"version": expected_version + 1})
        self._conversations[conversation.id] = new
        return new.model_copy(deep=True)

    async def touch_conversation(self, conversation_id: str, expires_at: datetime) -> None:
        c = self._conversations.get(conversation_id)
        if c is not None:
            self._conversations[conversation_id] = c.model_copy(update={"expires_at": expires_at})

    async def delete_conversation(
        self,
        conversation_id: str,
        *,
        incarnation: Incarnation | None = None,
        expected_version: int | None = None,
    ) -> bool:
        stored = self._found(conversation_id, incarnation)
        if stored is None:
            return False
        if expected_version is not None and stored.version != expected_version:
            raise VersionConflict(
                f"Conversation {conversation_id!r} is at version {stored.version}, "
                f"not {expected_version}."
            )
        return self._reclaim(conversation_id)

    async def delete_user_conversations(self, user_id: str) -> list[DeletedConversation]:
        mine = sorted(
            DeletedConversation(c.id, c.lineage_id, c.created_at)
            for c in self._conversations.values()
            if c.user_id == user_id
        )
        return [d for d in mine if self._reclaim(d.conversation_id)]

    async def footprint(self, lineage_id: str, conversation_ids: Sequence[str]) -> dict[str, int]:
        lineage = self._lineages.get(lineage_id)
        ids = set(conversation_ids) | {
            c.id for c in self._conversations.values() if c.lineage_id == lineage_id
        }
        return {
            "conversations": sum(1 for cid in ids if cid in self._conversations),
            "checkpoints": sum(len(self._checkpoints.get(cid, {})) for cid in ids),
            "context_items": sum(len(self._context_items.get(cid, {})) for cid in ids),
            "messages": len(lineage.messages) if lineage is not None else 0,
            "summaries": len(lineage.summaries) if lineage is not None else 0,
            "media_refs": self._media.lineage_ref_count(lineage_id),
            "lineages": int(lineage is not None),
        }

    async def list_conversations(
        self,
        flt: ConversationFilter,
        *,
        now: datetime,
        limit: int,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        after = parse_listing_cursor(cursor) if cursor is not None else None
        found = [
            c
            for c in self._conversations.values()
            if _live(c, now) and flt.matches(c) and (after is None or (c.updated_at, c.id) < after)
        ]
        found.sort(key=lambda c: (c.updated_at, c.id), reverse=True)
        page = found[:limit]
        next_cursor = listing_cursor(page[-1]) if len(found) > limit else None
        return Page(data=[c.model_copy(deep=True) for c in page], next_cursor=next_cursor)

    # --- messages ----------------------------------------------------------------------

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
        if not messages:
            raise ValueError("append_messages needs at least one message")
        stored = self._conversations.get(conversation.id)
        # another incarnation: a namesake created after `conversation` was deleted
        if stored is None or not _live(stored, now) or not same_incarnation(stored, conversation):
            raise ConversationNotFound(f"Conversation {conversation.id!r} not found.")
        if stored.head_message_id != conversation.head_message_id:
            raise HeadConflict(
                f"Conversation {conversation.id!r} head moved to {stored.head_message_id!r}."
            )
        lineage = self._lineages.setdefault(stored.lineage_id, Lineage())
        ids = [m.id for m in messages]
        if len(set(ids)) != len(ids) or any(i in lineage.messages for i in ids):
            raise Conflict("A message with this id already exists in the lineage.")
        refs = media_references(messages)
        missing = sorted({media_id for _, media_id in refs if not self._media.exists(media_id)})
        if missing:
            raise MediaNotFound(f"Media {missing[0]!r} not found.")
        self._media.add_refs(stored.lineage_id, refs)
        last = messages[-1]
        update: dict[str, object] = {
            "head_message_id": last.id,
            "message_count": last.depth + 1,
            "usage": stored.usage.plus(usage, cost_usd),
            "version": stored.version + 1,
            "updated_at": now,
        }
        if stored.ttl_seconds is not None:
            update["expires_at"] = now + timedelta(seconds=stored.ttl_seconds)
        if status is not None:
            update["status"] = status
        for m in messages:
            lineage.add(m.model_copy(deep=True))
        new = stored.model_copy(update=update)
        self._conversations[conversation.id] = new
        return new.model_copy(deep=True)

    async def get_messages(self, lineage_id: str, message_ids: Sequence[str]) -> list[Message]:
        lineage = self._lineages.get(lineage_id)
        if lineage is None:
            return []
        found = (lineage.messages.get(i) for i in message_ids)
        return [m.model_copy(deep=True) for m in found if m is not None]

    async def get_path(self, lineage_id: str, message_id: str, *, limit: int) -> list[Message]:
        lineage = self._lineages.get(lineage_id)
        path: list[Message] = []
        current: str | None = message_id
        while lineage is not None and current is not None and len(path) < limit:
            m = lineage.messages.get(current)
            if m is None:
                break
            path.append(m.model_copy(deep=True))
            current = m.parent_id
        return path

    async def ancestor_id(self, lineage_id: str, message_id: str, *, steps: int) -> str | None:
        lineage = self._lineages.get(lineage_id)
        if lineage is None or steps < 0:
            return None
        m = lineage.messages.get(message_id)
        for _ in range(steps):
            if m is None or m.parent_id is None:
                return None
            m = lineage.messages.get(m.parent_id)
        return m.id if m is not None else None

    async def list_children(self, lineage_id: str, parent_id: str | None) -> list[Message]:
        lineage = self._lineages.get(lineage_id)
        if lineage is None:
            return []
        children = [lineage.messages[i] for i in lineage.children.get(parent_id, [])]
        children.sort(key=lambda m: (m.created_at, m.id))
        return [m.model_copy(deep=True) for m in children]

    # --- expiry ------------------------------------------------------------------------

    async def purge_expired(self, *, now: datetime) -> int:
        expired = [cid for cid, c in self._conversations.items() if not _live(c, now)]
        return sum(1 for cid in expired if self._reclaim(cid))

    # --- deletion ----------------------------------------------------------------------

    def _reclaim(self, conversation_id: str) -> bool:
        """Delete a conversation, its checkpoints, its context items, and the messages
        nothing else reaches (`memory_lineage.unreachable`)."""
        c = self._conversations.pop(conversation_id, None)
        if c is None:
            return False
        self._checkpoints.pop(conversation_id, None)
        self._context_items.pop(conversation_id, None)
        lineage = self._lineages.get(c.lineage_id)
        if lineage is None:
            return True
        others = [o for o in self._conversations.values() if o.lineage_id == c.lineage_id]
        if not others:
            self._media.drop_refs(c.lineage_id, lineage.messages.values())
            del self._lineages[c.lineage_id]
            return True
        gone = unreachable(lineage, others, self._checkpoints)
        if not gone:
            return True
        self._media.drop_refs(c.lineage_id, gone)
        for message in gone:
            lineage.remove(message.id)
        return True
