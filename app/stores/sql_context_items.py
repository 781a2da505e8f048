"""Context items in the SQL backend (`context_items` table). A row cascades with its
conversation (and `sql_reclaim` deletes them explicitly too, as it does checkpoints)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.context_item import ContextItem
from app.errors import Conflict, ContextItemsFull, ConversationNotFound
from app.stores.sql_tables import context_items, conversations


async def _conversation_exists(conn: AsyncConnection, conversation_id: str) -> bool:
    c = conversations
    return await conn.scalar(sa.select(c.c.id).where(c.c.id == conversation_id)) is not None


async def _lock_conversation(
    conn: AsyncConnection, conversation_id: str, of: Sequence[sa.ColumnElement[bool]]
) -> bool:
    """False if the conversation is not stored (with `of`: as that incarnation,
    `sql_queries.of_incarnation`). PostgreSQL: its row is locked `FOR NO KEY
    UPDATE` until the transaction ends, so two capped inserts of one conversation take
    turns (the foreign key's share lock would not exclude each other); SQLite serializes
    write transactions already (`BEGIN IMMEDIATE`) and ignores the clause."""
    c = conversations
    query = sa.select(c.c.id).where(c.c.id == conversation_id, *of)
    query = query.with_for_update(key_share=True)
    return await conn.scalar(query) is not None


async def insert(
    conn: AsyncConnection,
    item: ContextItem,
    *,
    max_items: int | None,
    of: Sequence[sa.ColumnElement[bool]] = (),
) -> None:
    """Insert in a savepoint; `ConversationNotFound` / `Conflict` / `ContextItemsFull` as
    `StateStore.save_context_item` (the count and the insert in one transaction, under the
    conversation's lock; `of`: the conditions of its incarnation)."""
    if not await _lock_conversation(conn, item.conversation_id, of):
        raise ConversationNotFound(f"Conversation {item.conversation_id!r} not found.")
    if max_items is not None:
        t = context_items
        held = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(t)
            .where(t.c.conversation_id == item.conversation_id)
        )
        if (held or 0) >= max_items:
            raise ContextItemsFull(f"The conversation already has {max_items} context items.")
    try:
        async with conn.begin_nested():
            await conn.execute(
                sa.insert(context_items).values(
                    conversation_id=item.conversation_id,
                    id=item.id,
                    created_at=item.created_at,
                    data=item.model_dump(mode="json"),
                )
            )
    except sa_exc.IntegrityError as exc:
        if not await _conversation_exists(conn, item.conversation_id):  # deleted in between
            raise ConversationNotFound(f"Conversation {item.conversation_id!r} not found.") from exc
        raise Conflict(f"Context item {item.id!r} already exists.") from exc


async def of_conversation(conn: AsyncConnection, conversation_id: str) -> list[ContextItem]:
    t = context_items
    rows = await conn.execute(
        sa.select(t.c.data)
        .where(t.c.conversation_id == conversation_id)
        .order_by(t.c.created_at, t.c.id)
    )
    return [ContextItem.model_validate(data) for data in rows.scalars()]


async def delete(conn: AsyncConnection, conversation_id: str, item_id: str) -> bool:
    t = context_items
    result = await conn.execute(
        sa.delete(t)
        .where(t.c.conversation_id == conversation_id, t.c.id == item_id)
        .returning(t.c.id)
    )
    return result.first() is not None


async def delete_all(conn: AsyncConnection, conversation_id: str) -> int:
    t = context_items
    result = await conn.execute(
        sa.delete(t).where(t.c.conversation_id == conversation_id).returning(t.c.id)
    )
    return len(result.all())
