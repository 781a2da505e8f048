"""The export is written while it is read: the first messages go out after one page of the
path, not after the whole tree (`app.manager.export`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from app.domain import Conversation, Message, Role, Usage, new_id, utcnow
from app.domain.export_doc import document_checksum
from app.domain.principal import SERVICE, Principal
from app.manager.export import PAGE, ExportService
from app.stores.memory import MemoryStore

N = 3 * PAGE + 7


class CountingStore(MemoryStore):
    """Counts the messages every read hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.read = 0

    async def get_path(self, lineage_id: str, message_id: str, *, limit: int) -> list[Message]:
        path = await super().get_path(lineage_id, message_id, limit=limit)
        self.read += len(path)
        return path

    async def children_of(
        self, lineage_id: str, parent_ids: Sequence[str]
    ) -> dict[str, list[Message]]:
        kids = await super().children_of(lineage_id, parent_ids)
        self.read += sum(len(v) for v in kids.values())
        return kids


class Conversations:
    """The one call the export makes on the conversation service."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def get(self, principal: Principal, conversation_id: str) -> Conversation:
        conv = await self._store.get_conversation(conversation_id, now=utcnow())
        assert conv is not None
        return conv


async def _long_conversation(store: MemoryStore) -> Conversation:
    now = utcnow()
    conv = await store.create_conversation(
        Conversation(
            id="long",
            user_id="u",
            pack_id="p",
            pack_version="1",
            prompt_name="chat",
            provider="mock",
            model="m",
            created_at=now,
            updated_at=now,
            lineage_id="long",
        )
    )
    parent = None
    messages = []
    for i in range(N):
        mid = new_id()
        role = Role.user if i % 2 == 0 else Role.assistant
        messages.append(
            Message(
                id=mid,
                parent_id=parent,
                conversation_id="long",
                role=role,
                content=f"m{i}",
                created_at=now,
                depth=i,
            )
        )
        parent = mid
    return await store.append_messages(conv, messages, usage=Usage(), cost_usd=0.0, now=now)


async def test_first_messages_are_written_after_one_page_of_reads() -> None:
    store = CountingStore()
    await _long_conversation(store)
    service = ExportService(store=store, conversations=Conversations(store), clock=utcnow)  # type: ignore[arg-type]
    chunks: list[bytes] = []
    read_at_first_message = None
    async for chunk in await service.conversation(SERVICE, "long"):
        chunks.append(chunk)
        if read_at_first_message is None and b'"content"' in chunk:
            read_at_first_message = store.read
    assert read_at_first_message == PAGE  # one page of the path, of N messages
    assert store.read >= N  # the whole tree was read by the end, page by page
    doc: dict[str, Any] = json.loads(b"".join(chunks))
    assert len(doc["messages"]) == N and len({m["id"] for m in doc["messages"]}) == N
    assert doc["checksum"] == document_checksum(
        doc["format"],
        doc["conversation"],
        doc["head_message_id"],
        doc["checkpoints"],
        doc["messages"],
        doc["summaries"],
        doc["context_items"],
    )
