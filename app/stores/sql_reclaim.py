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
runs when there are candidates and other conversations, i.e. after a fork. The other
conversations, their forks and fork points are subqueries of the statements, never bound
lists: a lineage holds any number of forks (review R-J: a parameter per fork hit asyncpg's
32,767 arguments at ~11,000 forks), and the statement count is the same for 1 or 100,000.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import VersionConflict
from app.stores.sql_tables import checkpoints, context_items, conversations, messages

# The lineage's other conversations: an alias, so that their subqueries never correlate
# with a statement's own `conversations`.
_OTHER = conversations.alias("other")

# `data.forked_from` (`app.domain.ForkedFrom`, JSON null unless a fork): a fork's source,
# null unless the conversation is a fork, and its fork point (null when forked from none).
_FORKED_FROM: sa.ColumnElement[str] = _OTHER.c.data[("forked_from", "conversation_id")].as_string()
_FORK_POINT: sa.ColumnElement[str] = _OTHER.c.data[("forked_from", "message_id")].as_string()


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

    o = _OTHER
    others = sa.select(o.c.id).where(o.c.lineage_id == lineage_id, o.c.id != conversation_id)
    if await conn.scalar(others.limit(1)) is None:
        await conn.execute(sa.delete(m).where(m.c.lineage_id == lineage_id))
    else:
        orphaned = sa.and_(m.c.lineage_id == lineage_id, _unwritten(lineage_id, others))
        if await conn.scalar(sa.select(m.c.id).where(orphaned).limit(1)) is not None:
            reach = _reachable(lineage_id, others)
            await conn.execute(sa.delete(m).where(orphaned, m.c.id.not_in(sa.select(reach.c.id))))
    await conn.execute(sa.delete(cp).where(cp.c.conversation_id == conversation_id))
    ci = context_items
    await conn.execute(sa.delete(ci).where(ci.c.conversation_id == conversation_id))
    await conn.execute(sa.delete(c).where(c.c.id == conversation_id))
    return True


def _unwritten(lineage_id: str, others: sa.Select[tuple[str]]) -> sa.ColumnElement[bool]:
    """Whether no remaining conversation (`others`: the select of their ids) wrote the
    `messages` row (`app.domain.incarnation.wrote`): its writer id is none of theirs, or
    is a fork's and the message is dated before that fork (a fork made again under a
    deleted fork's id did not write the deleted one's messages). The forks' dates are
    looked up only for messages of a fork's id: the id test is the cheap one. The ids
    are subqueries, never bound lists: a lineage may hold any number of forks (review
    R-J: asyncpg refuses more than 32,767 arguments)."""
    m = messages
    forks = others.where(_FORKED_FROM.is_not(None))
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
    return sa.or_(
        m.c.conversation_id.not_in(others),
        sa.and_(m.c.conversation_id.in_(forks), before_it),
    )


def _reachable(lineage_id: str, others: sa.Select[tuple[str]]) -> sa.CTE:
    """Ids reachable from the other conversations' (`others`) heads, checkpoints and fork
    points."""
    o, m, cp = _OTHER, messages, checkpoints
    head, point = o.c.head_message_id, _FORK_POINT
    heads = others.with_only_columns(head.label("mid")).where(head.is_not(None))
    points = others.with_only_columns(point.label("mid")).where(point.is_not(None))
    marks = sa.select(cp.c.message_id.label("mid")).where(
        cp.c.conversation_id.in_(others), cp.c.message_id.is_not(None)
    )
    starts = sa.union(heads, points, marks).subquery("starts")
    seed = sa.select(m.c.id, m.c.parent_id).where(
        m.c.lineage_id == lineage_id, m.c.id.in_(sa.select(starts.c.mid))
    )
    reach = seed.cte("reach", recursive=True)
    parent = m.alias("parent")
    step = sa.select(parent.c.id, parent.c.parent_id).where(
        parent.c.lineage_id == lineage_id, parent.c.id == reach.c.parent_id
    )
    return reach.union(step)
