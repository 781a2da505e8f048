"""Media records and references on the SQL backend (tables `media`, `media_refs`).

The invariant "a referenced record is never deleted" is the foreign key from `media_refs`
to `media`: a deletion racing a commit that references the record fails on the key (and
the record stays) or happens first (and the commit fails, reported as `MediaNotFound`).
References go with their messages by `ON DELETE CASCADE`, so the deletion code of the
message tree needs to know nothing about media.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.media import MediaRecord
from app.stores.sql_tables import media, media_refs

_FLAGS = {"attached", "retain"}


def media_row(r: MediaRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "user_id": r.user_id,
        "sha256": r.sha256,
        "attached": r.attached,
        "retain": r.retain,
        "created_at": r.created_at,
        "data": r.model_dump(mode="json", exclude=_FLAGS),
    }


def media_from_row(row: Mapping[Any, Any]) -> MediaRecord:
    return MediaRecord.model_validate(
        {**row["data"], "attached": row["attached"], "retain": row["retain"]}
    )


async def find_owned(conn: AsyncConnection, user_id: str, sha256: str) -> MediaRecord | None:
    row = (
        await conn.execute(
            sa.select(media).where(media.c.user_id == user_id, media.c.sha256 == sha256)
        )
    ).first()
    return media_from_row(row._mapping) if row is not None else None


async def insert(conn: AsyncConnection, record: MediaRecord) -> bool:
    """False if the user already holds these bytes (or the id is taken)."""
    try:
        async with conn.begin_nested():
            await conn.execute(sa.insert(media).values(media_row(record)))
    except sa_exc.IntegrityError:
        return False
    return True


async def get(conn: AsyncConnection, media_id: str) -> MediaRecord | None:
    row = (await conn.execute(sa.select(media).where(media.c.id == media_id))).first()
    return media_from_row(row._mapping) if row is not None else None


async def mark_attached(conn: AsyncConnection, media_ids: Sequence[str], retain: bool) -> None:
    values: dict[str, Any] = {"attached": True}
    if retain:
        values["retain"] = True
    await conn.execute(sa.update(media).where(media.c.id.in_(list(media_ids))).values(values))


async def in_use(conn: AsyncConnection, sha256: str) -> bool:
    found = await conn.scalar(sa.select(media.c.id).where(media.c.sha256 == sha256).limit(1))
    return found is not None


async def existing_ids(conn: AsyncConnection, media_ids: Sequence[str]) -> set[str]:
    rows = await conn.execute(sa.select(media.c.id).where(media.c.id.in_(list(media_ids))))
    return set(rows.scalars())


async def insert_refs(
    conn: AsyncConnection, lineage_id: str, refs: Sequence[tuple[str, str]]
) -> None:
    rows = [{"lineage_id": lineage_id, "message_id": m, "media_id": r} for m, r in refs]
    await conn.execute(sa.insert(media_refs), rows)


async def lineage_ids(conn: AsyncConnection, lineage_id: str) -> list[str]:
    rows = await conn.execute(
        sa.select(media_refs.c.media_id)
        .where(media_refs.c.lineage_id == lineage_id)
        .distinct()
        .order_by(media_refs.c.media_id)
    )
    return list(rows.scalars())


def _unreferenced() -> sa.ColumnElement[bool]:
    return ~sa.exists().where(media_refs.c.media_id == media.c.id)


async def delete_if_unreferenced(
    conn: AsyncConnection, media_id: str, *, force: bool
) -> MediaRecord | None:
    """Delete one record if nothing references it (and, unless `force`, it is attached
    and not retained); the deleted record, or None."""
    where = [media.c.id == media_id, _unreferenced()]
    if not force:
        where += [media.c.attached.is_(True), media.c.retain.is_(False)]
    try:
        async with conn.begin_nested():
            row = (await conn.execute(sa.delete(media).where(*where).returning(*media.c))).first()
    except sa_exc.IntegrityError:  # a reference was committed concurrently: it wins
        return None
    return media_from_row(row._mapping) if row is not None else None


async def user_ids(conn: AsyncConnection, user_id: str) -> list[str]:
    rows = await conn.execute(
        sa.select(media.c.id).where(media.c.user_id == user_id).order_by(media.c.id)
    )
    return list(rows.scalars())


async def collectable_ids(conn: AsyncConnection, limit: int) -> list[str]:
    rows = await conn.execute(
        sa.select(media.c.id)
        .where(media.c.attached.is_(True), media.c.retain.is_(False), _unreferenced())
        .order_by(media.c.id)
        .limit(limit)
    )
    return list(rows.scalars())
