"""Builders for contract tests: conversations and message chains with unique ids."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from app.domain import (
    Checkpoint,
    Conversation,
    ForkedFrom,
    Message,
    Role,
    Usage,
    new_id,
    utcnow,
)
from app.stores.base import StateStore

# Strictly increasing timestamps, so "oldest first" orders are unambiguous.
_ticks = itertools.count()
_EPOCH = datetime(2030, 1, 1, tzinfo=UTC)


def tick() -> datetime:
    return _EPOCH + timedelta(microseconds=next(_ticks) * 7)


def conversation(
    conversation_id: str | None = None,
    *,
    user_id: str = "alice",
    pack_id: str = "pack",
    lineage_id: str | None = None,
    **fields: Any,
) -> Conversation:
    cid = conversation_id or f"c-{new_id()}"
    now = fields.pop("now", None) or utcnow()
    fields.setdefault("created_at", now)
    fields.setdefault("updated_at", now)
    return Conversation(
        id=cid,
        user_id=user_id,
        pack_id=pack_id,
        pack_version="1.0.0",
        prompt_name="support",
        provider="mock",
        model="mock-echo",
        lineage_id=lineage_id or cid,
        **fields,
    )


def fork_of(
    source: Conversation, message_id: str | None, *, user_id: str | None = None, **fields: Any
) -> Conversation:
    """A conversation of `source`'s lineage whose head is `message_id` (as a fork is)."""
    return conversation(
        user_id=user_id or source.user_id,
        lineage_id=source.lineage_id,
        head_message_id=message_id,
        forked_from=ForkedFrom(conversation_id=source.id, message_id=message_id),
        **fields,
    )


def message(
    writer: Conversation,
    parent: Message | None,
    *,
    role: Role = Role.user,
    content: str = "",
    message_id: str | None = None,
    **fields: Any,
) -> Message:
    return Message(
        id=message_id or new_id(),
        parent_id=parent.id if parent else None,
        conversation_id=writer.id,
        role=role,
        content=content or f"text {next(_ticks)}",
        created_at=tick(),
        depth=parent.depth + 1 if parent else 0,
        **fields,
    )


def chain(writer: Conversation, parent: Message | None, n: int) -> list[Message]:
    out: list[Message] = []
    for i in range(n):
        out.append(
            message(writer, out[-1] if out else parent, role=Role.user if i % 2 else Role.assistant)
        )
    return out


async def append(
    store: StateStore,
    conv: Conversation,
    msgs: Sequence[Message],
    *,
    usage: Usage | None = None,
    cost_usd: float = 0.0,
    now: datetime | None = None,
    **kwargs: Any,
) -> Conversation:
    return await store.append_messages(
        conv, msgs, usage=usage or Usage(), cost_usd=cost_usd, now=now or utcnow(), **kwargs
    )


async def grow(store: StateStore, conv: Conversation, n: int) -> tuple[Conversation, list[Message]]:
    """Append `n` chained messages on `conv`'s head; return the new state and them."""
    head = None
    if conv.head_message_id is not None:
        (head,) = await store.get_messages(conv.lineage_id, [conv.head_message_id])
    msgs = chain(conv, head, n)
    return await append(store, conv, msgs), msgs


def checkpoint(conv: Conversation, message_id: str | None, **fields: Any) -> Checkpoint:
    return Checkpoint(
        id=fields.pop("checkpoint_id", None) or new_id(),
        conversation_id=conv.id,
        message_id=message_id,
        message_count=fields.pop("message_count", 0),
        created_at=fields.pop("created_at", None) or tick(),
        **fields,
    )


async def present(store: StateStore, lineage_id: str, ids: Sequence[str]) -> set[str]:
    return {m.id for m in await store.get_messages(lineage_id, ids)}
