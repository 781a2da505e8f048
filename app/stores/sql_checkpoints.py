"""Checkpoints in the SQL backend (`checkpoints` table); `SqlStore` opens the connection
(and, for a new one, checks the conversation under its lineage's lock)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import Checkpoint
from app.errors import Conflict
from app.stores.sql_tables import checkpoint_from_data, checkpoint_row, checkpoints


async def insert(conn: AsyncConnection, checkpoint: Checkpoint) -> None:
    try:
        await conn.execute(sa.insert(checkpoints).values(checkpoint_row(checkpoint)))
    except sa_exc.IntegrityError as exc:
        raise Conflict(f"Checkpoint {checkpoint.id!r} already exists.") from exc


async def of_conversation(
    conn: AsyncConnection, conversation_id: str, kind: str | None
) -> list[Checkpoint]:
    cp = checkpoints
    stmt = sa.select(cp.c.data).where(cp.c.conversation_id == conversation_id)
    if kind is not None:
        stmt = stmt.where(cp.c.kind == kind)
    stmt = stmt.order_by(cp.c.created_at, cp.c.id)
    return [checkpoint_from_data(r.data) for r in await conn.execute(stmt)]


async def get(conn: AsyncConnection, conversation_id: str, checkpoint_id: str) -> Checkpoint | None:
    cp = checkpoints
    data = await conn.scalar(
        sa.select(cp.c.data).where(
            cp.c.conversation_id == conversation_id, cp.c.id == checkpoint_id
        )
    )
    return checkpoint_from_data(data) if data is not None else None


async def delete(conn: AsyncConnection, conversation_id: str, checkpoint_id: str) -> bool:
    cp = checkpoints
    result = await conn.execute(
        sa.delete(cp)
        .where(cp.c.conversation_id == conversation_id, cp.c.id == checkpoint_id)
        .returning(cp.c.id)
    )
    return result.first() is not None
