"""Deleting a conversation from the SQL store without breaking its lineage (DESIGN §3).

Messages are shared through forks, so deleting a conversation deletes only the messages
nothing else needs. The rule, identical to the memory backend's:

* candidates are the lineage's messages no remaining conversation of the lineage wrote:
  this one's, and those left behind by conversations deleted earlier;
* a candidate stays if it is on the path of another conversation's head, of one of its
  checkpoints, or of its fork point;
* messages written by a remaining conversation always stay (they are its branches); a
  fork wrote only those of its id dated at or after it (`app.domain.incarnation.wrote`),
  so a fork made again under a deleted fork's id keeps none of the deleted one's;
* when no other conversation remains, the whole lineage's messages go (fast path), so
  deleting every conversation of a lineage leaves nothing behind.

The reachable set is a recursive CTE with UNION, so shared ancestry is walked once; it only
runs when there are candidates and other conversations, i.e. after a fork.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import VersionConflict
from app.stores.sql_tables import checkpoints, context_items, conversations, messages


async def reclaim_conversation(
    conn: AsyncConnection,
    conversation_id: str,
    lineage_id: str,
    *,
    expired_at: datetime | None = None,
    created_at: datetime | None = None,
    expected_version: int | None = None,
) -> bool:
    """Delete one conversation and what only it needed. The caller holds the write
    transaction (and, on PostgreSQL, the lineage's advisory lock). With `expired_at`, only
    a conversation expired at that instant is deleted; with `created_at`, only the
    incarnation created then (`app.domain.incarnation`); with `expected_version`, a row
    at another version raises `VersionConflict`. True if a row was deleted."""
    c, m, cp = conversations, messages, checkpoints
    where = [c.c.id == conversation_id, c.c.lineage_id == lineage_id]
    if expired_at is not None:
        where.append(c.c.expires_at <= expired_at)
    if created_at is not None:
        where.append(c.c.created_at == created_at)
    found = (await conn.execute(sa.select(c.c.version).where(*where).with_for_update())).first()
    if found is None:
        return False
    if expected_version is not None and found.version != expected_version:
        raise VersionConflict(
            f"Conversation {conversation_id!r} is at version {found.version}, "
            f"not {expected_version}."
        )

    others = (
        await conn.execute(
            sa.select(c.c.id, c.c.data).where(
                c.c.lineage_id == lineage_id, c.c.id != conversation_id
            )
        )
    ).all()
    if not others:
        await conn.execute(sa.delete(m).where(m.c.lineage_id == lineage_id))
    else:
        orphaned = sa.and_(m.c.lineage_id == lineage_id, _unwritten(lineage_id, others))
        if await conn.scalar(sa.select(m.c.id).where(orphaned).limit(1)) is not None:
            reach = _reachable(lineage_id, conversation_id, _fork_points(others))
            await conn.execute(sa.delete(m).where(orphaned, m.c.id.not_in(sa.select(reach.c.id))))
    await conn.execute(sa.delete(cp).where(cp.c.conversation_id == conversation_id))
    ci = context_items
    await conn.execute(sa.delete(ci).where(ci.c.conversation_id == conversation_id))
    await conn.execute(sa.delete(c).where(c.c.id == conversation_id))
    return True


def _unwritten(lineage_id: str, others: Sequence[Any]) -> sa.ColumnElement[bool]:
    """Whether no remaining conversation (`others`: their id and data) wrote the
    `messages` row (`app.domain.incarnation.wrote`): its writer id is none of theirs, or
    is a fork's and the message is dated before that fork (a fork made again under a
    deleted fork's id did not write the deleted one's messages). The forks' dates are
    looked up only for messages of a fork's id: the id test is the cheap one."""
    m = messages
    ids = [str(row.id) for row in others]
    unwritten = m.c.conversation_id.not_in(ids)
    forks = [str(row.id) for row in others if (row.data or {}).get("forked_from") is not None]
    if not forks:
        return unwritten
    writer = conversations.alias("writer")
    before_it = (
        sa.exists()
        .where(
            writer.c.id == m.c.conversation_id,
            writer.c.lineage_id == lineage_id,
            m.c.created_at < writer.c.created_at,
        )
        .correlate(m)
    )
    return sa.or_(unwritten, sa.and_(m.c.conversation_id.in_(forks), before_it))


def _fork_points(rows: Iterable[Any]) -> list[str]:
    points: list[str] = []
    for row in rows:
        forked = (row.data or {}).get("forked_from") or {}
        if isinstance(forked.get("message_id"), str):
            points.append(forked["message_id"])
    return points


def _reachable(lineage_id: str, deleted_id: str, fork_points: list[str]) -> sa.CTE:
    """Ids reachable from the other conversations' heads, checkpoints and fork points."""
    c, m, cp = conversations, messages, checkpoints
    heads = sa.select(c.c.head_message_id.label("mid")).where(
        c.c.lineage_id == lineage_id, c.c.id != deleted_id, c.c.head_message_id.is_not(None)
    )
    marks = (
        sa.select(cp.c.message_id.label("mid"))
        .join(c, c.c.id == cp.c.conversation_id)
        .where(c.c.lineage_id == lineage_id, c.c.id != deleted_id, cp.c.message_id.is_not(None))
    )
    starts = sa.union(heads, marks).subquery("starts")
    seed_ids = sa.or_(m.c.id.in_(sa.select(starts.c.mid)), m.c.id.in_(fork_points))
    seed = sa.select(m.c.id, m.c.parent_id).where(m.c.lineage_id == lineage_id, seed_ids)
    reach = seed.cte("reach", recursive=True)
    parent = m.alias("parent")
    step = sa.select(parent.c.id, parent.c.parent_id).where(
        parent.c.lineage_id == lineage_id, parent.c.id == reach.c.parent_id
    )
    return reach.union(step)
