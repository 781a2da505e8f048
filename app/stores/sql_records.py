"""The SQL store's records attached to conversations and lineages: checkpoints, summaries,
context items, uploaded packs, media records and references. Each delegates its
statements to its module (`sql_checkpoints`, `sql_summaries`, ...) inside a connection
of `SqlConnections`; `app.stores.sql.SqlStore` adds conversations and messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import asyncpg

from app.domain import Checkpoint
from app.domain.context_item import ContextItem
from app.domain.incarnation import Incarnation
from app.domain.media import MediaRecord
from app.domain.summary import Summary
from app.errors import Conflict, ConversationNotFound
from app.stores import (
    sql_checkpoints,
    sql_context_items,
    sql_media,
    sql_packs,
    sql_summaries,
)
from app.stores.sql_connections import SqlConnections
from app.stores.sql_queries import of_incarnation


class SqlRecords(SqlConnections):
    # --- checkpoints -------------------------------------------------------------------

    async def create_checkpoint(
        self, checkpoint: Checkpoint, *, incarnation: Incarnation | None = None
    ) -> Checkpoint:
        cid = checkpoint.conversation_id
        if self._traits.single_writer:  # SQLite: BEGIN IMMEDIATE .. COMMIT, one hand-off
            values = sql_checkpoints.sqlite_values(checkpoint)
            insert = partial(
                sql_checkpoints.sqlite_insert, values, of=sql_checkpoints.sqlite_owner(incarnation)
            )
            async with self._sqlite_write() as writer:
                found = await writer.transaction(insert)
            if not found:
                raise ConversationNotFound(f"Conversation {cid!r} not found.")
            return checkpoint.model_copy(deep=True)
        # PostgreSQL: BEGIN, the lineage locked as it is read, the INSERT, COMMIT
        try:
            async with self._postgres_transaction() as driver:
                found = await sql_checkpoints.postgres_insert(driver, checkpoint, incarnation)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"Checkpoint {checkpoint.id!r} already exists.") from exc
        if not found:
            raise ConversationNotFound(f"Conversation {cid!r} not found.")
        return checkpoint.model_copy(deep=True)

    async def list_checkpoints(
        self, conversation_id: str, *, kind: str | None = None
    ) -> list[Checkpoint]:
        if self._checkpoints_read is None:
            raise RuntimeError("SqlStore.open() has not been called")
        async with self._read_driver() as driver:  # one statement: no transaction around it
            return await self._checkpoints_read(driver, conversation_id, kind)

    async def get_checkpoint(self, conversation_id: str, checkpoint_id: str) -> Checkpoint | None:
        async with self._read() as conn:
            return await sql_checkpoints.get(conn, conversation_id, checkpoint_id)

    async def delete_checkpoint(self, conversation_id: str, checkpoint_id: str) -> bool:
        async with self._write() as conn:
            return await sql_checkpoints.delete(conn, conversation_id, checkpoint_id)

    # --- summaries ----------------------------------------------------------------------

    async def save_summary(self, summary: Summary) -> Summary:
        async with self._write() as conn:
            # no reclaim of the lineage between the check of the covered message and commit
            await self._lock_lineages(conn, [summary.lineage_id], shared=True)
            await sql_summaries.insert(conn, summary)
        return summary.model_copy(deep=True)

    async def list_summaries(self, lineage_id: str) -> list[Summary]:
        async with self._read() as conn:
            return await sql_summaries.of_lineage(conn, lineage_id)

    async def delete_summary(self, lineage_id: str, summary_id: str) -> bool:
        async with self._write() as conn:
            return await sql_summaries.delete(conn, lineage_id, summary_id)

    # --- context items ------------------------------------------------------------------

    async def save_context_item(
        self,
        item: ContextItem,
        *,
        max_items: int | None = None,
        incarnation: Incarnation | None = None,
    ) -> ContextItem:
        async with self._write() as conn:
            await sql_context_items.insert(
                conn, item, max_items=max_items, of=of_incarnation(incarnation)
            )
        return item.model_copy(deep=True)

    async def list_context_items(self, conversation_id: str) -> list[ContextItem]:
        async with self._read() as conn:
            return await sql_context_items.of_conversation(conn, conversation_id)

    async def delete_context_item(self, conversation_id: str, item_id: str) -> bool:
        async with self._write() as conn:
            return await sql_context_items.delete(conn, conversation_id, item_id)

    async def delete_context_items(self, conversation_id: str) -> int:
        async with self._write() as conn:
            return await sql_context_items.delete_all(conn, conversation_id)

    # --- uploaded packs ----------------------------------------------------------------

    async def save_pack(
        self, pack_id: str, version: str, document: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        async with self._write() as conn:
            if await sql_packs.insert_pack(conn, pack_id, version, document):
                return document, True
            stored = await sql_packs.stored_pack(conn, pack_id, version)
        assert stored is not None
        return stored, False

    async def list_packs(self) -> list[dict[str, Any]]:
        async with self._read() as conn:
            return await sql_packs.all_packs(conn)

    async def pack_count(self) -> int:
        async with self._read() as conn:
            return await sql_packs.count(conn)

    # --- media records and references ----------------------------------------------------

    async def save_media(self, record: MediaRecord) -> MediaRecord:
        async with self._write() as conn:
            existing = await sql_media.find_owned(conn, record.user_id, record.sha256)
            if existing is not None:
                return existing
            if await sql_media.insert(conn, record):
                return record.model_copy()
            existing = await sql_media.find_owned(conn, record.user_id, record.sha256)
        if existing is None:
            raise Conflict(f"Media {record.id!r} already exists.")
        return existing

    async def get_media(self, media_id: str) -> MediaRecord | None:
        async with self._read() as conn:
            return await sql_media.get(conn, media_id)

    async def mark_media_attached(self, media_ids: Sequence[str], *, retain: bool) -> None:
        if not media_ids:
            return
        async with self._write() as conn:
            await sql_media.mark_attached(conn, media_ids, retain)

    async def media_in_use(self, sha256: str) -> bool:
        async with self._read() as conn:
            return await sql_media.in_use(conn, sha256)

    async def lineage_media_ids(self, lineage_id: str) -> list[str]:
        async with self._read() as conn:
            return await sql_media.lineage_ids(conn, lineage_id)

    async def collect_media(
        self, media_ids: Sequence[str], *, force: bool = False
    ) -> list[MediaRecord]:
        deleted = []
        for media_id in dict.fromkeys(media_ids):
            async with self._write() as conn:
                found = await sql_media.delete_if_unreferenced(conn, media_id, force=force)
            if found is not None:
                deleted.append(found)
        return deleted

    async def user_media_ids(self, user_id: str) -> list[str]:
        async with self._read() as conn:
            return await sql_media.user_ids(conn, user_id)

    async def collectable_media_ids(self, *, limit: int) -> list[str]:
        async with self._read() as conn:
            return await sql_media.collectable_ids(conn, limit)
