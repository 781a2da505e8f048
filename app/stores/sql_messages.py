"""Reading messages in the SQL backend (`messages` table): by id, an ancestor's id, and
children (the path to a message is read on the driver, `sql_hot_path`); `SqlStore` opens
the connection.
Writing them is `append_messages`'s (one transaction with the head's compare-and-set)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import Message
from app.stores.sql_queries import ancestor_statement
from app.stores.sql_tables import json_text, message_from_json, messages

_IN_CHUNK = 500  # ids per IN (...) list; far below SQLite's host-parameter limit


async def by_ids(
    conn: AsyncConnection, lineage_id: str, message_ids: Sequence[str]
) -> list[Message]:
    wanted = list(dict.fromkeys(message_ids))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        rows = await conn.execute(
            sa.select(messages.c.id, json_text(messages.c.data).label("data")).where(
                messages.c.lineage_id == lineage_id, messages.c.id.in_(chunk)
            )
        )
        found.update((r.id, r.data) for r in rows)
    return [message_from_json(found[i]) for i in message_ids if i in found]


async def ancestor(
    conn: AsyncConnection, lineage_id: str, message_id: str, steps: int
) -> str | None:
    found: str | None = (
        await conn.execute(ancestor_statement(lineage_id, message_id, steps))
    ).scalar()
    return found


async def children(conn: AsyncConnection, lineage_id: str, parent_id: str | None) -> list[Message]:
    m = messages
    is_child = m.c.parent_id.is_(None) if parent_id is None else m.c.parent_id == parent_id
    stmt = (
        sa.select(json_text(m.c.data).label("data"))
        .where(m.c.lineage_id == lineage_id, is_child)
        .order_by(m.c.created_at, m.c.id)
    )
    return [message_from_json(r.data) for r in await conn.execute(stmt)]


async def children_of(
    conn: AsyncConnection, lineage_id: str, parent_ids: Sequence[str]
) -> dict[str, list[Message]]:
    """One query per 500 parents."""
    out: dict[str, list[Message]] = {}
    ids = list(dict.fromkeys(parent_ids))
    m = messages
    for i in range(0, len(ids), 500):
        stmt = (
            sa.select(json_text(m.c.data).label("data"))
            .where(m.c.lineage_id == lineage_id, m.c.parent_id.in_(ids[i : i + 500]))
            .order_by(m.c.created_at, m.c.id)
        )
        for r in await conn.execute(stmt):
            child = message_from_json(r.data)
            assert child.parent_id is not None
            out.setdefault(child.parent_id, []).append(child)
    return out
