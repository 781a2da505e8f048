"""A bounded cache of committed messages and what the context builder derives from them.

Messages are immutable (DESIGN §3), so an entry keyed by message id is never stale, on any
instance. With it, a turn walks its context window in memory and reads from the store only
the messages it has not seen: after the first turn of a conversation that is nothing, and
turn cost no longer depends on how much history the window holds.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from app.domain import Message, Part
from app.domain.media_tokens import TokenRule, media_tokens
from app.domain.tokens import estimate_tokens
from app.providers.base import ProviderMessage
from app.stores.base import StateStore

MESSAGE_OVERHEAD_TOKENS = 4  # role and separators, as providers count them


@dataclass(frozen=True, slots=True)
class CachedMessage:
    message: Message
    tokens: int  # text and tool calls; media is counted by the provider's rule
    provider_message: ProviderMessage
    media: tuple[Part, ...] = ()

    def cost(self, rule: TokenRule) -> int:
        return self.tokens + parts_media_tokens(self.media, rule)


def media_parts(m: Message) -> tuple[Part, ...]:
    return tuple(p for p in m.parts if p.type != "text" and p.media is not None)


def parts_media_tokens(parts: Iterable[Part], rule: TokenRule) -> int:
    """Input tokens of media parts by `rule` (`app.domain.media_tokens`)."""
    return sum(media_tokens(p.type, p.media, rule) for p in parts if p.media is not None)


def to_provider_message(m: Message) -> ProviderMessage:
    has_media = any(p.type != "text" for p in m.parts)
    return ProviderMessage.model_construct(
        role=m.role.value,
        content=m.content,
        parts=list(m.parts) if has_media else [],
        tool_calls=list(m.tool_calls),
        tool_call_id=m.tool_call_id,
        name=m.name,
    )


def message_tokens(m: Message) -> int:
    tokens = MESSAGE_OVERHEAD_TOKENS + estimate_tokens(m.content)
    for call in m.tool_calls:
        tokens += estimate_tokens(call.name) + estimate_tokens(json.dumps(call.arguments))
    return tokens


class MessageCache:
    """LRU of `CachedMessage` by message id, at most `max_entries` entries."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._entries: OrderedDict[str, CachedMessage] = OrderedDict()
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, message_id: str) -> CachedMessage | None:
        entry = self._entries.get(message_id)
        if entry is not None:
            self._entries.move_to_end(message_id)
        return entry

    def put(self, messages: Iterable[Message]) -> None:
        for m in messages:
            if m.id in self._entries:
                self._entries.move_to_end(m.id)
                continue
            self._entries[m.id] = CachedMessage(
                m, message_tokens(m), to_provider_message(m), media_parts(m)
            )
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def walk(
        self,
        store: StateStore,
        lineage_id: str,
        start_id: str | None,
        *,
        max_messages: int,
        token_budget: int,
        batch: int = 64,
        rule: TokenRule = "openai",
    ) -> tuple[list[CachedMessage], bool]:
        """Messages of the path ending at `start_id`, newest first, while they fit
        `token_budget` and `max_messages` (media counted by `rule`). Returns (messages,
        reached_root)."""
        out: list[CachedMessage] = []
        used = 0
        cursor = start_id
        while cursor is not None and len(out) < max_messages:
            entry = self.get(cursor)
            if entry is None:
                fetched = await store.get_path(
                    lineage_id, cursor, limit=min(batch, max_messages - len(out))
                )
                if not fetched:
                    return out, True  # dangling parent: treat as the root
                self.put(fetched)
                entry = self.get(cursor)
                assert entry is not None
            cost = entry.cost(rule)
            if used + cost > token_budget:
                return out, False
            out.append(entry)
            used += cost
            cursor = entry.message.parent_id
        return out, cursor is None
