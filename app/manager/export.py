"""Export: a conversation as one `parley.conversation/v1` document, a user's conversations
as NDJSON (DESIGN §6; the format and checksum: `app.domain.export_doc`).

A document is written as it is read, in pages from the store, so an export never holds
the whole tree: what it keeps is the ids it has written (to write shared ancestry once)
and one level of the tree walk at a time. Nothing is checked or read before the first
byte except the conversation and its checkpoints; a store failure later cuts the stream
before the checksum, so a truncated document never imports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

from app.domain import Checkpoint, Conversation, Message
from app.domain.export_doc import DOCUMENT_FORMAT, DocumentHasher
from app.domain.filters import ConversationFilter
from app.domain.incarnation import wrote
from app.domain.principal import Principal
from app.errors import InvalidRequest, NotFound
from app.manager.conversations import ConversationService
from app.stores.base import StateStore

Listed = tuple[str, str, datetime]  # a listed conversation's incarnation: id, lineage, created_at

PAGE = 500  # messages per store read (path pages, parents per children_of)
LIST_PAGE = 200  # conversations per listing page of a user export


def refuse_embedded_media(include_media: bool) -> None:
    """`include_media=true` would embed media bytes; until that exists it is refused
    rather than silently ignored (media parts always keep their references)."""
    if include_media:
        raise InvalidRequest(
            "include_media=true (embedding media bytes) is not available in this version; "
            "exports keep media parts' references (media_id, sha256) as stored.",
            errors=[{"loc": ["query", "include_media"], "msg": "not available"}],
        )


class ExportService:
    def __init__(
        self,
        *,
        store: StateStore,
        conversations: ConversationService,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._conversations = conversations
        self._now = clock

    async def conversation(
        self, principal: Principal, conversation_id: str, *, include_media: bool = False
    ) -> AsyncIterator[bytes]:
        """The document's bytes. Access and the conversation's existence are checked
        here, before the caller starts a response (404 stays a problem response)."""
        refuse_embedded_media(include_media)
        conv = await self._conversations.get(principal, conversation_id)
        checkpoints = await self._store.list_checkpoints(conv.id)
        return self._document(conv, checkpoints)

    async def user(
        self,
        principal: Principal,
        user_id: str,
        *,
        include_media: bool = False,
        as_array: bool = False,
    ) -> AsyncIterator[bytes]:
        """One document per line (NDJSON) for every live conversation of the user, or
        with `as_array` the same documents as one JSON array. The ids are listed first
        (ids only), so a conversation updated during the export (which moves it in the
        listing's order) is neither missed nor written twice."""
        refuse_embedded_media(include_media)
        if not principal.can_access(user_id):
            raise NotFound(f"User {user_id!r} not found.")  # like any cross-user call
        listed: list[Listed] = []  # (the incarnation only: a listing may be long)
        cursor: str | None = None
        flt = ConversationFilter(user_id=user_id)
        while True:
            page = await self._conversations.list(principal, flt, limit=LIST_PAGE, cursor=cursor)
            listed.extend((c.id, c.lineage_id, c.created_at) for c in page.data)
            cursor = page.next_cursor
            if cursor is None:
                break
        return self._documents(listed, as_array=as_array)

    async def _documents(self, listed: Sequence[Listed], *, as_array: bool) -> AsyncIterator[bytes]:
        """Each listed conversation's document, read again when its turn comes (it may have
        changed). One deleted since the listing is left out, and so is one created again
        under its id (by anyone: ids are global): the export streams as slowly as its
        client reads, so a user could hold it open while another user's conversation took
        a listed id, and got that conversation's document (tester-2 U6)."""
        if as_array:
            yield b"["
        written = 0
        for conversation_id, lineage_id, created_at in listed:
            conv = await self._store.get_conversation(conversation_id, now=self._now())
            if conv is None or (conv.lineage_id, conv.created_at) != (lineage_id, created_at):
                continue  # deleted or expired since it was listed, or another one now
            checkpoints = await self._store.list_checkpoints(conv.id)
            if as_array and written:
                yield b","
            async for chunk in self._document(conv, checkpoints):
                yield chunk
            if not as_array:
                yield b"\n"
            written += 1
        if as_array:
            yield b"]"

    async def _document(
        self, conv: Conversation, checkpoints: list[Checkpoint]
    ) -> AsyncIterator[bytes]:
        """The document on one line (no newline inside: NDJSON takes it as is)."""
        h = DocumentHasher()
        yield b'{"format":' + h.add(DOCUMENT_FORMAT)
        yield b',"conversation":' + h.add(conv.model_dump(mode="json"))
        yield b',"head_message_id":' + h.add(conv.head_message_id)
        h.add(len(checkpoints))
        yield b',"checkpoints":['
        for i, cp in enumerate(checkpoints):
            yield (b"," if i else b"") + h.add(cp.model_dump(mode="json"))
        yield b'],"messages":['
        first = True
        seen: set[str] = set()
        async for batch in self._messages(conv, checkpoints, seen):
            out = bytearray()
            for m in batch:
                if not first:
                    out += b","
                first = False
                out += h.add(m.model_dump(mode="json"))
            yield bytes(out)
        summaries = [
            s
            for s in await self._store.list_summaries(conv.lineage_id)
            if s.covers_message_id in seen
        ]
        h.add(len(summaries))
        yield b'],"summaries":['
        for i, summary in enumerate(summaries):
            yield (b"," if i else b"") + h.add(summary.model_dump(mode="json"))
        items = await self._store.list_context_items(conv.id)
        h.add(len(items))
        yield b'],"context_items":['
        for i, item in enumerate(items):
            yield (b"," if i else b"") + h.add(item.model_dump(mode="json"))
        yield b'],"checksum":"' + h.checksum().encode() + b'"}'

    async def _messages(
        self, conv: Conversation, checkpoints: list[Checkpoint], seen: set[str]
    ) -> AsyncIterator[list[Message]]:
        """Every message reachable from the conversation, in batches: first the paths
        of its head, its checkpoints and its fork point (newest first, shared ancestry
        once), then, level by level, every branch it wrote off them (or as a root).
        `seen` collects the ids written."""
        lineage = conv.lineage_id
        anchors: list[str] = []
        starts = [conv.head_message_id, *(cp.message_id for cp in checkpoints)]
        if conv.forked_from is not None:
            starts.append(conv.forked_from.message_id)
        for start in dict.fromkeys(s for s in starts if s is not None):
            current: str | None = start
            while current is not None and current not in seen:
                page = await self._store.get_path(lineage, current, limit=PAGE)
                batch: list[Message] = []
                current = page[-1].parent_id if page else None
                for m in page:
                    if m.id in seen:
                        current = None
                        break
                    seen.add(m.id)
                    batch.append(m)
                anchors.extend(m.id for m in batch)
                if batch:
                    yield batch
        roots = [
            m
            for m in await self._store.list_children(lineage, None)
            if wrote(conv, m) and m.id not in seen
        ]
        seen.update(m.id for m in roots)
        if roots:
            yield roots
        frontier = anchors + [m.id for m in roots]
        del anchors
        while frontier:
            level: list[str] = []
            for i in range(0, len(frontier), PAGE):
                kids = await self._store.children_of(lineage, frontier[i : i + PAGE])
                own = [
                    child
                    for children in kids.values()
                    for child in children
                    if wrote(conv, child) and child.id not in seen
                ]
                seen.update(m.id for m in own)
                level.extend(m.id for m in own)
                if own:
                    yield own
            frontier = level
