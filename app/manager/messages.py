"""Reading a conversation's messages: the current path in pages, and single messages."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain import Message, Page
from app.domain.principal import Principal
from app.errors import InvalidCursor, MessageNotFound
from app.manager.conversations import ConversationService
from app.manager.message_cache import MessageCache
from app.manager.tree import TreeService
from app.manager.visible_relatives import visible_relatives
from app.stores.base import StateStore


@dataclass
class MessageWithRelatives:
    message: Message
    sibling_ids: list[str]
    sibling_index: int
    sibling_count: int
    children_ids: list[str]


class MessageService:
    def __init__(
        self,
        *,
        store: StateStore,
        conversations: ConversationService,
        cache: MessageCache,
        tree: TreeService,
    ) -> None:
        self._tree = tree
        self._store = store
        self._conversations = conversations
        self._cache = cache

    async def page(
        self, principal: Principal, conversation_id: str, *, limit: int, before: str | None
    ) -> Page[Message]:
        """Up to `limit` messages of the current path ending just before `before` (or at the
        head), oldest first. `next_cursor` is the oldest returned id when older ones exist."""
        conv = await self._conversations.get(principal, conversation_id)
        tip = conv.head_message_id  # the path the page lies on, when known
        if before is None:
            start = conv.head_message_id
        else:
            # visible to this conversation, not merely of its lineage: a fork (maybe
            # another user's) must not page its source's later turns, nor the source the
            # fork's (outside tester T21)
            try:
                cursor, tip = await self._tree.visible_with_tip(conv, before)
            except MessageNotFound:
                raise InvalidCursor(
                    f"before={before!r} is not a message of this conversation; pass a "
                    "next_cursor this endpoint returned."
                ) from None
            start = cursor.parent_id
        if start is None:
            return Page(data=[], next_cursor=None)
        path = await self._store.get_path(conv.lineage_id, start, limit=limit)
        self._cache.put(conv.lineage_id, path)
        oldest = path[-1] if path else None
        next_cursor = oldest.id if oldest is not None and oldest.parent_id is not None else None
        if next_cursor is not None and tip is not None:
            # the next page's check of its cursor is then a lookup (review R8)
            self._tree.known_ancestors.remember(conv.lineage_id, tip, next_cursor)
        path.reverse()
        return Page(data=path, next_cursor=next_cursor)

    async def get(
        self, principal: Principal, conversation_id: str, message_id: str
    ) -> MessageWithRelatives:
        """A message this conversation may see (`TreeService.visible_message`: never one
        only another fork reaches) with its visible relatives (`visible_relatives`)."""
        conv = await self._conversations.get(principal, conversation_id)
        message = await self._tree.visible_message(conv, message_id)
        siblings, children = await visible_relatives(
            self._store,
            conv,
            message,
            await self._store.list_children(conv.lineage_id, message.parent_id),
            await self._store.list_children(conv.lineage_id, message.id),
        )
        return MessageWithRelatives(
            message=message,
            sibling_ids=[m.id for m in siblings if m.id != message.id],
            sibling_index=next((i for i, m in enumerate(siblings) if m.id == message.id), 0),
            sibling_count=max(len(siblings), 1),
            children_ids=[m.id for m in children],
        )
