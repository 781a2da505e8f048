"""Uploaded PromptPacks in the SQL backend: first writer wins per (pack_id, version)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import utcnow
from app.stores.sql_tables import packs


async def stored_pack(conn: AsyncConnection, pack_id: str, version: str) -> dict[str, Any] | None:
    row = await conn.execute(
        sa.select(packs.c.document).where(packs.c.pack_id == pack_id, packs.c.version == version)
    )
    document: dict[str, Any] | None = row.scalar()
    return document


async def insert_pack(
    conn: AsyncConnection, pack_id: str, version: str, document: dict[str, Any]
) -> bool:
    """Insert inside a savepoint; False if another writer stored the key first."""
    seq = (await conn.execute(sa.select(sa.func.coalesce(sa.func.max(packs.c.seq), 0)))).scalar()
    try:
        async with conn.begin_nested():
            await conn.execute(
                packs.insert().values(
                    pack_id=pack_id,
                    version=version,
                    seq=int(seq or 0) + 1,
                    created_at=utcnow(),
                    document=document,
                )
            )
    except IntegrityError:
        return False
    return True


async def count(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(packs))).scalar() or 0)


async def all_packs(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(sa.select(packs.c.document).order_by(packs.c.seq))
    return [dict(r) for r in rows.scalars()]
