"""Checkpoints in the SQL backend (`checkpoints` table); `SqlStore` opens the connection
(and, for a new one, checks the conversation under its lineage's lock)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import Checkpoint
from app.errors import Conflict
from app.stores.sql_tables import checkpoint_row, checkpoints, json_text


async def insert(conn: AsyncConnection, checkpoint: Checkpoint) -> None:
    try:
        await conn.execute(sa.insert(checkpoints).values(checkpoint_row(checkpoint)))
    except sa_exc.IntegrityError as exc:
        raise Conflict(f"Checkpoint {checkpoint.id!r} already exists.") from exc


async def of_conversation(
    conn: AsyncConnection, conversation_id: str, kind: str | None
) -> list[Checkpoint]:
    cp = checkpoints
    # the JSON text, parsed and validated in one step (`json_text`): an auto checkpoint
    # turn lists up to `max_auto` (50) of them
    stmt = sa.select(json_text(cp.c.data)).where(cp.c.conversation_id == conversation_id)
    if kind is not None:
        stmt = stmt.where(cp.c.kind == kind)
    stmt = stmt.order_by(cp.c.created_at, cp.c.id)
    return [Checkpoint.model_validate_json(text) for text in await conn.scalars(stmt)]


async def get(conn: AsyncConnection, conversation_id: str, checkpoint_id: str) -> Checkpoint | None:
    cp = checkpoints
    text = await conn.scalar(
        sa.select(json_text(cp.c.data)).where(
            cp.c.conversation_id == conversation_id, cp.c.id == checkpoint_id
        )
    )
    return Checkpoint.model_validate_json(text) if text is not None else None


async def delete(conn: AsyncConnection, conversation_id: str, checkpoint_id: str) -> bool:
    cp = checkpoints
    result = await conn.execute(
        sa.delete(cp)
        .where(cp.c.conversation_id == conversation_id, cp.c.id == checkpoint_id)
        .returning(cp.c.id)
    )
    return result.first() is not None
