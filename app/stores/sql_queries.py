"""The SQL store's non-trivial statements, built with SQLAlchemy Core for both dialects."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from app.domain import Conversation, ConversationStatus, Message, Usage
from app.domain.filters import float_filter, integer_filter
from app.domain.incarnation import Incarnation
from app.stores._common import prefix_upper_bound
from app.stores.base import ConversationFilter
from app.stores.sql_tables import (
    checkpoints,
    context_items,
    conversations,
    media_refs,
    messages,
    summaries,
)

_conv = conversations


def live(now: datetime) -> sa.ColumnElement[bool]:
    """Not expired at `now` (an expired conversation is invisible from that instant)."""
    return sa.or_(_conv.c.expires_at.is_(None), _conv.c.expires_at > now)


def incarnation(conversation: Conversation) -> sa.ColumnElement[bool]:
    """The row of this incarnation of the conversation, not a namesake created under its id
    since: another lineage, or a fork made again in its lineage (`app.domain.incarnation`)."""
    return sa.and_(
        _conv.c.id == conversation.id,
        _conv.c.lineage_id == conversation.lineage_id,
        _conv.c.created_at == conversation.created_at,
    )


def of_incarnation(incarnation: Incarnation | None) -> list[sa.ColumnElement[bool]]:
    """The conditions (none for None) that a `conversations` row selected by id is that
    incarnation (`StateStore.create_checkpoint`, `save_context_item`)."""
    if incarnation is None:
        return []
    return [
        _conv.c.lineage_id == incarnation.lineage_id,
        _conv.c.created_at == incarnation.created_at,
    ]


def append_params(
    conversation: Conversation,
    last: Message,
    *,
    usage: Usage,
    cost_usd: float,
    now: datetime,
    status: ConversationStatus | None,
) -> dict[str, Any]:
    """The parameters of `append_messages`' compare-and-set of the head, which increments
    every counter in SQL and returns the new row (`app.stores.sql_hot_append` runs it).
    It matches nothing if the head moved or the conversation is gone/expired, or is another
    incarnation (a namesake created after this one was deleted: ids are reusable, and a
    first turn's "no head yet" would match the namesake's empty head; a fork made again
    under a deleted fork's id has its lineage and often its head: `created` tells them
    apart, `app.domain.incarnation`). Only the
    columns a turn changes are written: a concurrent PATCH of metadata, variables, ...
    (which live in other columns or in `data`) is kept. No `expected_head`: the
    conversation has no message yet; no `status`: unchanged."""
    expected = conversation.head_message_id
    params: dict[str, Any] = {
        "cid": conversation.id,
        "lineage": conversation.lineage_id,
        "created": conversation.created_at,
        "head": last.id,
        "message_count": last.depth + 1,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "cost_usd": cost_usd,
        "now": now,
    }
    if expected is not None:
        params["expected_head"] = expected
    if status is not None:
        params["status"] = status.value
    return params


def ancestor_statement(lineage_id: str, message_id: str, steps: int) -> sa.Select[Any]:
    """The id `steps` parent links above `message_id`: the walk of `sql_hot_path`'s path
    read (`parent_id` through the (lineage_id, id) primary key) over (id, parent_id) only,
    so no message's data is read; no row when the path ends first."""
    m = messages
    seed = sa.select(m.c.id, m.c.parent_id, sa.literal(0).label("n")).where(
        m.c.lineage_id == lineage_id, m.c.id == message_id
    )
    walk = seed.cte("walk", recursive=True)
    parent = m.alias("parent")
    step = sa.select(parent.c.id, parent.c.parent_id, (walk.c.n + 1).label("n")).where(
        parent.c.lineage_id == lineage_id,
        parent.c.id == walk.c.parent_id,
        walk.c.n < steps,
    )
    walk = walk.union_all(step)
    return sa.select(walk.c.id).where(walk.c.n == steps)


def listing_statement(
    flt: ConversationFilter,
    *,
    now: datetime,
    limit: int,
    after: tuple[datetime, str] | None,
    jsonb: bool,
) -> sa.Select[Any]:
    """Live conversations matching `flt` in (updated_at desc, id desc) order, strictly
    after the keyset `after`. The prefix is a range on the primary key (no LIKE, so `%`
    and `_` are literal and the index is used)."""
    where: list[sa.ColumnElement[bool]] = [live(now)]
    if flt.user_id is not None:
        where.append(_conv.c.user_id == flt.user_id)
    if flt.pack_id is not None:
        where.append(_conv.c.pack_id == flt.pack_id)
    if flt.prefix is not None:
        where.append(_conv.c.id >= flt.prefix)
        upper = prefix_upper_bound(flt.prefix)
        if upper is not None:
            where.append(_conv.c.id < upper)
    where.extend(metadata_equals(k, v, jsonb=jsonb) for k, v in flt.metadata.items())
    if after is not None:
        updated_at, after_id = after
        where.append(
            sa.or_(
                _conv.c.updated_at < updated_at,
                sa.and_(_conv.c.updated_at == updated_at, _conv.c.id < after_id),
            )
        )
    return (
        sa.select(_conv)
        .where(*where)
        .order_by(_conv.c.updated_at.desc(), _conv.c.id.desc())
        .limit(limit)
    )


def metadata_equals(key: str, value: str, *, jsonb: bool) -> sa.ColumnElement[bool]:
    """`metadata[key]` rendered as text the way PostgreSQL's `->>` does equals `value`
    (`metadata_text`, see `ConversationFilter`); absent keys, objects and arrays never
    match."""
    if jsonb:
        doc = sa.type_coerce(_conv.c.meta, postgresql.JSONB)
        kind = sa.func.jsonb_typeof(doc[key])
        if value == "null":  # `->>` turns a JSON null into SQL NULL; the contract says "null"
            return sa.or_(kind == "null", sa.and_(kind == "string", doc[key].astext == value))
        return sa.and_(kind.in_(("string", "number", "boolean")), doc[key].astext == value)
    # SQLite: json_each yields each member's key, SQL value and JSON type. Matching on the
    # key column (not a JSON path) needs no quoting of keys like 'a.b' or 'we"ird'. Its
    # numbers are compared as numbers, with the one a rendering of `value` names (SQLite's
    # text of a REAL is not PostgreSQL's: `1.0e-07`, not `0.0000001`).
    je = sa.func.json_each(_conv.c.meta).table_valued("key", "value", "type").alias("je")
    same: list[sa.ColumnElement[bool]] = [sa.and_(je.c.type == "text", je.c.value == value)]
    if value in ("true", "false", "null"):
        same.append(je.c.type == value)
    integer = integer_filter(value)
    if integer is not None:
        same.append(sa.and_(je.c.type == "integer", je.c.value == integer))
    number = float_filter(value)
    if number is not None:
        same.append(sa.and_(je.c.type == "real", je.c.value == number))
    return sa.exists().where(je.c.key == key, sa.or_(*same))


def footprint_statements(
    lineage_id: str, conversation_ids: Sequence[str]
) -> dict[str, sa.Select[Any]]:
    """COUNT(*) per table of what the store holds for a lineage and these conversations
    (`StateStore.footprint`)."""
    ids = sa.or_(_conv.c.lineage_id == lineage_id, _conv.c.id.in_(list(conversation_ids)))
    of_convs = sa.select(_conv.c.id).where(ids).scalar_subquery()
    count = sa.func.count()
    return {
        "conversations": sa.select(count).select_from(_conv).where(ids),
        "checkpoints": sa.select(count)
        .select_from(checkpoints)
        .where(
            sa.or_(
                checkpoints.c.conversation_id.in_(list(conversation_ids)),
                checkpoints.c.conversation_id.in_(of_convs),
            )
        ),
        "messages": sa.select(count)
        .select_from(messages)
        .where(messages.c.lineage_id == lineage_id),
        "media_refs": sa.select(count)
        .select_from(media_refs)
        .where(media_refs.c.lineage_id == lineage_id),
        "summaries": sa.select(count)
        .select_from(summaries)
        .where(summaries.c.lineage_id == lineage_id),
        "context_items": sa.select(count)
        .select_from(context_items)
        .where(
            sa.or_(
                context_items.c.conversation_id.in_(list(conversation_ids)),
                context_items.c.conversation_id.in_(of_convs),
            )
        ),
    }
