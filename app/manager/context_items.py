"""`/conversations/{id}/context` items: reference documents and notes a conversation
carries (`app.domain.context_item`); the context builder sends them
(`app.manager.context_item_window`).

An item's text is fixed when it is added: `content`, or the text of the user's own
uploaded media: text/plain or text/markdown as UTF-8, a PDF's text layer (`app.media.
pdf_text`), each read once and decoded in a thread. Other media types are refused, as is
a PDF without a text layer, text over `PARLEY_CONTEXT_ITEM_MAX_KB` (413) and an item
beyond `PARLEY_CONTEXT_ITEMS_MAX` (the store counts and inserts atomically, so concurrent
adds never go past it).
A fork gets a copy of its source's items at fork time (`copy_context_items`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from app.domain import Conversation, Page, new_id
from app.domain.context_item import ContextItem
from app.domain.incarnation import Incarnation, same_incarnation
from app.domain.media import MediaRecord
from app.domain.pagination import decode_item_cursor, encode_item_cursor
from app.domain.preconditions import IfMatch
from app.domain.principal import Principal
from app.domain.requests import AddContextItem
from app.errors import (
    ContextItemNotFound,
    ContextItemsFull,
    ContextItemTooLarge,
    ConversationNotFound,
    InvalidRequest,
    UnsupportedMedia,
    VersionConflict,
)
from app.manager.context_item_window import item_tokens
from app.manager.conversations import ConversationService
from app.manager.media import MediaService
from app.media.pdf_text import PdfTextError, pdf_text
from app.settings import Settings
from app.stores.base import StateStore

TEXT_TYPES = frozenset({"text/plain", "text/markdown"})
FLAG_RETRIES = 5


class ContextItemService:
    def __init__(
        self,
        *,
        store: StateStore,
        conversations: ConversationService,
        media: MediaService,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._conversations = conversations
        self._media = media
        self._max_bytes = settings.context_item_max_kb * 1024
        self._max_items = settings.context_items_max
        self._now = clock

    async def add(
        self,
        principal: Principal,
        conversation_id: str,
        body: AddContextItem,
        if_match: IfMatch | None = None,
    ) -> ContextItem:
        """`if_match` is checked against the conversation read, and again when the
        conversation's flag is set (`_flag`: it changes the version)."""
        conv = await self._conversations.get(principal, conversation_id, if_match=if_match)
        source = body.source
        if body.media_id is not None:
            content, filename = await self._media_text(principal, body.media_id)
            source = source or filename
        else:
            assert body.content is not None  # the model's validator
            content = body.content
            if len(content.encode()) > self._max_bytes:
                raise self._too_large()
        if not content.strip():
            raise InvalidRequest(
                "The context item has no text (only whitespace counts as empty too).",
                errors=[{"loc": ["body", "content"], "msg": "non-blank text required"}],
            )
        if len(await self._store.list_context_items(conv.id)) >= self._max_items:
            raise self._full()  # early, before the flag; the store's check is the one that holds
        conv = await self._flag(conv, if_match)
        item = ContextItem(
            id=new_id(),
            conversation_id=conv.id,
            content=content,
            media_id=body.media_id,
            source=source,
            pinned=body.pinned,
            metadata=body.metadata,
            tokens=item_tokens(content, source),
            created_at=self._now(),
        )
        try:
            return await self._store.save_context_item(
                item, max_items=self._max_items, incarnation=Incarnation.of(conv)
            )
        except ContextItemsFull:  # concurrent adds filled it since the check above
            raise self._full() from None

    def _full(self) -> InvalidRequest:
        return InvalidRequest(
            f"The conversation already has {self._max_items} context items "
            "(PARLEY_CONTEXT_ITEMS_MAX); delete one first.",
            errors=[{"loc": ["body"], "msg": "too many context items"}],
        )

    async def _flag(self, conv: Conversation, if_match: IfMatch | None) -> Conversation:
        """Mark the conversation as having items before the first one is stored (a flag
        left set by a failed save only costs its turns one read); the conversation as
        flagged. A conversation changed since it was read must still satisfy `if_match`
        (412 otherwise), and be the same incarnation (404 otherwise: review R-A2, a
        namesake created under the id meanwhile is not flagged)."""
        for _ in range(FLAG_RETRIES):
            if conv.has_context_items:
                return conv
            try:
                return await self._store.update_conversation(
                    conv.model_copy(update={"has_context_items": True}),
                    expected_version=conv.version,
                )
            except VersionConflict:  # a turn committed meanwhile: re-read, try again
                fresh = await self._store.get_conversation(conv.id, now=self._now())
                if fresh is None or not same_incarnation(fresh, conv):
                    raise ConversationNotFound(f"Conversation {conv.id!r} not found.") from None
                if if_match is not None:
                    if_match.require(fresh)
                conv = fresh
        raise VersionConflict("The conversation kept changing; try again.")

    async def list(
        self, principal: Principal, conversation_id: str, *, limit: int, cursor: str | None
    ) -> Page[ContextItem]:
        """Oldest first. The cursor is the (created_at, id) of the last one returned (bound to
        this conversation), so an
        item deleted between pages does not break paging."""
        conv = await self._conversations.get(principal, conversation_id)
        items = await self._store.list_context_items(conv.id)
        if cursor is not None:
            after = decode_item_cursor(cursor, conv.id)
            items = [i for i in items if (i.created_at, i.id) > after]
        page = items[:limit]
        next_cursor = None
        if len(items) > limit:
            last = page[-1]
            next_cursor = encode_item_cursor(conv.id, last.created_at, last.id)
        return Page(data=page, next_cursor=next_cursor)

    async def get(self, principal: Principal, conversation_id: str, item_id: str) -> ContextItem:
        conv = await self._conversations.get(principal, conversation_id)
        for item in await self._store.list_context_items(conv.id):
            if item.id == item_id:
                return item
        raise ContextItemNotFound(f"Context item {item_id!r} not found in this conversation.")

    async def delete(
        self,
        principal: Principal,
        conversation_id: str,
        item_id: str,
        if_match: IfMatch | None = None,
    ) -> None:
        conv = await self._conversations.get(principal, conversation_id, if_match=if_match)
        if not await self._store.delete_context_item(conv.id, item_id):
            raise ContextItemNotFound(f"Context item {item_id!r} not found in this conversation.")

    async def delete_all(
        self, principal: Principal, conversation_id: str, if_match: IfMatch | None = None
    ) -> None:
        """Every item of the conversation, at once (none: nothing to do, not an error). The
        conversation's `has_context_items` stays set: clearing it could race an add, and a
        set flag only costs its turns one read."""
        conv = await self._conversations.get(principal, conversation_id, if_match=if_match)
        await self._store.delete_context_items(conv.id)

    async def _media_text(self, principal: Principal, media_id: str) -> tuple[str, str | None]:
        record = await self._media.get(principal, media_id)
        mime = record.mime_type.split(";")[0].strip().lower()
        if mime == "application/pdf":
            return await self._pdf_text(media_id, record), record.filename
        if mime not in TEXT_TYPES:
            raise UnsupportedMedia(
                f"Media {media_id!r} is {record.mime_type}; a context item reads text/plain, "
                "text/markdown or application/pdf."
            )
        if record.size_bytes > self._max_bytes:
            raise self._too_large()
        last = max(record.size_bytes - 1, 0)
        data = b"".join([chunk async for chunk in self._media.read(record, 0, last)])
        try:
            text = await asyncio.to_thread(data.decode, "utf-8")
        except UnicodeDecodeError:
            raise UnsupportedMedia(f"Media {media_id!r} is not UTF-8 text.") from None
        return text, record.filename

    async def _pdf_text(self, media_id: str, record: MediaRecord) -> str:
        """The PDF's text (the file may be far larger than its text: the upload limit
        bounds it; the text is held to the item's limit by the caller)."""
        last = max(record.size_bytes - 1, 0)
        data = b"".join([chunk async for chunk in self._media.read(record, 0, last)])
        try:
            text = await asyncio.to_thread(pdf_text, data, max_chars=self._max_bytes)
        except PdfTextError as exc:
            raise UnsupportedMedia(f"Media {media_id!r}: {exc}.") from None
        if len(text.encode()) > self._max_bytes:
            raise self._too_large()
        return text

    def _too_large(self) -> ContextItemTooLarge:
        return ContextItemTooLarge(
            f"A context item holds at most {self._max_bytes // 1024} KB of text "
            "(PARLEY_CONTEXT_ITEM_MAX_KB)."
        )


async def copy_context_items(store: StateStore, source_id: str, target: Conversation) -> None:
    """Give `target` (a new fork) a copy of every item of `source_id`: new ids, the same
    order, times and pins, stored on that incarnation only. Items are small and a fork gets
    few of them; the copy is not atomic with the fork's creation (a failure here deletes
    the fork, see `TreeService.fork`)."""
    mine = Incarnation.of(target)
    for item in await store.list_context_items(source_id):
        await store.save_context_item(
            item.model_copy(update={"id": new_id(), "conversation_id": target.id}),
            incarnation=mine,
        )
