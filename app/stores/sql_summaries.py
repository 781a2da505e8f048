"""Context summaries in the SQL backend (`summaries` table). A row cascades with the
message it covers, so the deletion rule of `sql_reclaim` takes summaries along without
knowing about them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.summary import Summary
from app.errors import Conflict, MessageNotFound
from app.stores.sql_tables import messages, summaries


async def _covered_exists(conn: AsyncConnection, summary: Summary) -> bool:
    m = messages
    found = await conn.scalar(
        sa.select(m.c.id).where(
            m.c.lineage_id == summary.lineage_id, m.c.id == summary.covers_message_id
        )
    )
    return found is not None


async def insert(conn: AsyncConnection, summary: Summary) -> None:
    """Insert in a savepoint; `MessageNotFound` / `Conflict` as `StateStore.save_summary`."""
    if not await _covered_exists(conn, summary):
        raise MessageNotFound(f"Message {summary.covers_message_id!r} not found.")
    try:
        async with conn.begin_nested():
            await conn.execute(
                sa.insert(summaries).values(
                    lineage_id=summary.lineage_id,
                    id=summary.id,
                    covers_message_id=summary.covers_message_id,
                    created_at=summary.created_at,
                    data=summary.model_dump(mode="json"),
                )
            )
    except sa_exc.IntegrityError as exc:
        if not await _covered_exists(conn, summary):  # reclaimed in between (foreign key)
            raise MessageNotFound(f"Message {summary.covers_message_id!r} not found.") from exc
        raise Conflict(f"Summary {summary.id!r} already exists.") from exc


async def of_lineage(conn: AsyncConnection, lineage_id: str) -> list[Summary]:
    s = summaries
    rows = await conn.execute(
        sa.select(s.c.data).where(s.c.lineage_id == lineage_id).order_by(s.c.created_at, s.c.id)
    )
    return [Summary.model_validate(data) for data in rows.scalars()]


async def delete(conn: AsyncConnection, lineage_id: str, summary_id: str) -> bool:
    s = summaries
    result = await conn.execute(
        sa.delete(s).where(s.c.lineage_id == lineage_id, s.c.id == summary_id).returning(s.c.id)
    )
    return result.first() is not None
