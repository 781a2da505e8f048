"""A bounded cache of committed messages and what the context builder derives from them.

Messages are immutable (DESIGN §3), so an entry keyed by (lineage, message id) is never
stale, on any instance. The lineage is in the key because a message id is unique only
within its lineage: an import keeps the document's message ids in a new lineage, with
whatever content the document has (a redacted copy, or another user's text under a
victim's ids); keyed by id alone, the copy an instance cached first was what every
conversation holding that id sent to the provider (outside tester T8). With the cache, a
turn walks its context window in memory and reads from the store only the messages it has
not seen: after the first turn of a conversation that is nothing, and turn cost no longer
depends on how much history the window holds.

Token counts: an entry holds its estimate (`tokens`) and memoizes its exact count per
encoding the first time a conversation counted by that encoding needs it
(`CachedMessage.cost`; a message is the same text for every model, so one entry serves
all of them). Counting at build time instead would be as correct but pays toktok's ~40 us
per call for every message of the window on every provider call (~6 ms for 160 messages,
measured) where the memo pays it once per message and encoding.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from app.domain import Message, Part, ToolCall
from app.domain.media_tokens import TokenRule, media_tokens
from app.domain.tokens import ESTIMATE, TokenCounter
from app.providers.base import ProviderMessage
from app.stores.base import StateStore

MESSAGE_OVERHEAD_TOKENS = 4  # role and separators, as providers count them


@dataclass(frozen=True, slots=True)
class CachedMessage:
    message: Message
    tokens: int  # text and tool calls by the estimate; media by the provider's rule
    provider_message: ProviderMessage
    media: tuple[Part, ...] = ()
    exact: dict[str, int] = field(default_factory=dict)  # text tokens by encoding (memo)

    def text_tokens(self, counter: TokenCounter = ESTIMATE) -> int:
        if not counter.exact:
            return self.tokens
        found = self.exact.get(counter.kind)
        if found is None:
            found = self.exact[counter.kind] = message_tokens(self.message, counter)
        return found

    def cost(self, rule: TokenRule, counter: TokenCounter = ESTIMATE) -> int:
        text = self.text_tokens(counter)
        return text + parts_media_tokens(self.media, rule) if self.media else text


_TOKENS = attrgetter("tokens")
_MEDIA = attrgetter("media")


def total_cost(entries: Sequence[CachedMessage], rule: TokenRule, counter: TokenCounter) -> int:
    """`sum(c.cost(rule, counter) for c in entries)`; a window of estimate-counted text
    (every mock and non-OpenAI turn) is summed without a Python call per message."""
    if counter.exact or any(map(_MEDIA, entries)):
        return sum(c.cost(rule, counter) for c in entries)
    return sum(map(_TOKENS, entries))


def media_parts(m: Message) -> tuple[Part, ...]:
    return tuple(p for p in m.parts if p.type != "text" and p.media is not None)


def parts_media_tokens(parts: Iterable[Part], rule: TokenRule) -> int:
    """Input tokens of media parts by `rule` (`app.domain.media_tokens`)."""
    return sum(media_tokens(p.type, p.media, rule) for p in parts if p.media is not None)


def to_provider_message(m: Message) -> ProviderMessage:
    """Validated, not `model_construct`ed: pydantic-core's validation of these few
    fields (~1 us) is cheaper than `model_construct`'s Python loop over them (~3 us,
    measured), and a cold window builds one per message."""
    has_media = any(p.type != "text" for p in m.parts)
    return ProviderMessage(
        role=m.role.value,
        content=m.content,
        parts=list(m.parts) if has_media else [],
        tool_calls=list(m.tool_calls),
        tool_call_id=m.tool_call_id,
        name=m.name,
    )


def message_text_tokens(
    content: str | None, tool_calls: Sequence[ToolCall], counter: TokenCounter
) -> int:
    """The overhead + the text + each tool call's name and JSON arguments, counted in one
    batch."""
    texts = [content or ""]
    for call in tool_calls:
        texts += [call.name, json.dumps(call.arguments)]
    return MESSAGE_OVERHEAD_TOKENS + counter.total(texts)


def message_tokens(m: Message, counter: TokenCounter = ESTIMATE) -> int:
    return message_text_tokens(m.content, m.tool_calls, counter)


# Memory of one entry beyond its text, measured with tracemalloc (the Message with its
# text part, its provider form and the cache's bookkeeping: ~4.2 KB in all for a one-word
# one-part message). Re-measured on 2,000 messages read from SQLite (2026-12-04):
# `entry_bytes` is 0.98-1.00 of what the cache held for 9-13,800-character messages; the
# unit test keeps it within a quarter. Most of it is the parsed Message (~3.1 KB of
# pydantic objects for ~20 fields), not the cache's bookkeeping.
ENTRY_OVERHEAD_BYTES = 3500 + 200  # + the exact-count memo (a dict of one or two ints)


def entry_bytes(m: Message) -> int:
    """What caching `m` costs, roughly: the overhead plus its text (held as the content
    string and in the provider message) and tool call arguments."""
    size = ENTRY_OVERHEAD_BYTES + 2 * len(m.content)
    for call in m.tool_calls:
        size += len(call.name) + len(str(call.arguments))
    return size + 512 * len(m.parts)


def cached_message(m: Message) -> CachedMessage:
    return CachedMessage(m, message_tokens(m), to_provider_message(m), media_parts(m))


MAX_BATCH = 1024  # one read of a cold walk at most (~50 ms of rows on SQLite)
WINDOW_LENGTHS_MAX = 10_000  # lineages whose last window length is remembered


def next_batch(first: int, walked: int, used: int, token_budget: int) -> int:
    """How many messages a walk reads on a miss: `first` until it has walked some, then
    the budget left at their average cost, a quarter more for the spread, at least `first`
    and at most `MAX_BATCH`. Reading past the window wastes ~45 us a message (SQLite, JSON
    and validation); a read costs ~2 ms round trip (measured)."""
    if walked == 0 or used <= 0:
        return first
    expected = (token_budget - used) * walked // used
    return max(first, min(MAX_BATCH, expected + expected // 4 + 1))


class MessageCache:
    """LRU of `CachedMessage` by (lineage id, message id), bounded by the estimated memory of its
    entries (`entry_bytes`): at most `max_bytes` (`PARLEY_MESSAGE_CACHE_MB`; 0 keeps
    nothing)."""

    def __init__(self, max_bytes: int = 16 * 2**20) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[CachedMessage, int]] = OrderedDict()
        self._max_bytes = max_bytes
        self._bytes = 0
        self._window_lengths: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """The estimated memory of the entries held now."""
        return self._bytes

    def get(self, lineage_id: str, message_id: str) -> CachedMessage | None:
        key = (lineage_id, message_id)
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[0]

    def put(self, lineage_id: str, messages: Iterable[Message]) -> None:
        """Cache `messages`, all of `lineage_id` (as stored: the caller read or committed
        them there)."""
        self._admit(lineage_id, messages)

    def _admit(self, lineage_id: str, messages: Iterable[Message]) -> dict[str, CachedMessage]:
        """`put`, returning the entry of every message by id, kept or not: a walk uses the
        batch it read even when the cache is too small to keep it (with 0 MB it would
        otherwise read the path again for each message of the window)."""
        out: dict[str, CachedMessage] = {}
        entries = self._entries
        for m in messages:
            key = (lineage_id, m.id)
            found = entries.get(key)
            if found is not None:
                entries.move_to_end(key)
                out[m.id] = found[0]
                continue
            size = entry_bytes(m)
            entry = out[m.id] = cached_message(m)
            entries[key] = (entry, size)
            self._bytes += size
        while self._bytes > self._max_bytes and self._entries:
            _, (_, size) = self._entries.popitem(last=False)
            self._bytes -= size
        return out

    def window_length(self, lineage_id: str) -> int | None:
        """How many messages the last walk in `lineage_id` returned (LRU of
        `WINDOW_LENGTHS_MAX` lineages): the size of a first read that is likely to hold the
        next turn's window when the cache no longer does (`TurnNumbers.turn_of`)."""
        return self._window_lengths.get(lineage_id)

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
        counter: TokenCounter = ESTIMATE,
        stop_at: Container[str] = (),
    ) -> tuple[list[CachedMessage], bool]:
        """`_walk`, remembering how many messages it returned (`window_length`; not in a
        cache that keeps nothing, where a read sized by it would be read again)."""
        out, reached_root = await self._walk(
            store,
            lineage_id,
            start_id,
            max_messages=max_messages,
            token_budget=token_budget,
            batch=batch,
            rule=rule,
            counter=counter,
            stop_at=stop_at,
        )
        if not self._max_bytes:
            return out, reached_root
        lengths = self._window_lengths
        lengths[lineage_id] = len(out)
        lengths.move_to_end(lineage_id)
        if len(lengths) > WINDOW_LENGTHS_MAX:
            lengths.popitem(last=False)
        return out, reached_root

    async def _walk(
        self,
        store: StateStore,
        lineage_id: str,
        start_id: str | None,
        *,
        max_messages: int,
        token_budget: int,
        batch: int = 64,
        rule: TokenRule = "openai",
        counter: TokenCounter = ESTIMATE,
        stop_at: Container[str] = (),
    ) -> tuple[list[CachedMessage], bool]:
        """Messages of the path ending at `start_id`, newest first, while they fit
        `token_budget` and `max_messages` (text by `counter`, media by `rule`), stopping before any
        message whose id is in `stop_at`. Returns (messages, reached_root).

        A miss reads `batch` messages first, then as many as the budget left is likely to
        hold at the average cost of the messages walked so far (`next_batch`): on a cold
        cache a window of ~200 messages is two reads, not four of 64."""
        out: list[CachedMessage] = []
        used = 0
        cursor = start_id
        # The loop runs once per message of the window on every provider call: the hit
        # path makes no Python call (an estimate-counted text entry's cost is its `tokens`).
        entries = self._entries
        touch = entries.move_to_end
        estimate = not counter.exact
        read: dict[str, CachedMessage] = {}  # the last batch read, kept by the cache or not
        while cursor is not None and len(out) < max_messages and cursor not in stop_at:
            key = (lineage_id, cursor)
            found = entries.get(key)
            if found is not None:
                touch(key)
                entry = found[0]
            elif (held := read.get(cursor)) is not None:
                entry = held
            else:
                size = next_batch(batch, len(out), used, token_budget)
                fetched = await store.get_path(
                    lineage_id, cursor, limit=min(size, max_messages - len(out))
                )
                if not fetched:
                    return out, True  # dangling parent: treat as the root
                read = self._admit(lineage_id, fetched)
                entry = read[fetched[0].id]  # `cursor`'s message
            cost = entry.tokens if estimate and not entry.media else entry.cost(rule, counter)
            if used + cost > token_budget:
                return out, False
            out.append(entry)
            used += cost
            cursor = entry.message.parent_id
        return out, cursor is None
