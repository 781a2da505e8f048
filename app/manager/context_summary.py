"""The window of context strategy `summarize`: a summary, then the recent messages.

Per provider call, with H = the history's share of the input budget (what is left after
the system prompt, tools and the turn's own messages):

1. The path is walked newest first until it no longer fits H, or it reaches a message a
   stored summary of the lineage covers (the deepest on the path: the first met), or the
   root. Everything fits and no summary is met: the whole path is sent, no summary.
2. A summary is met and it plus the messages after it fit H: they are sent. No provider
   call: this is the steady state, and what `GET .../context` shows byte for byte.
3. Otherwise a new summary is written (`Summarizer.extend`): the one met (or, past the
   budget, the next one further back; or none, from the root) extended by the oldest
   messages after it. The messages kept are the newest that fit half of what the summary
   leaves of H (`max_tokens` = H / 4 for the summary), starting at a user message, so an
   assistant tool call never loses its results and the next summary is needed only once
   that half has filled up: one summarization call per that many tokens of conversation.

When no new summary can be written (the summarization call failed; or a dry run, which
never calls a provider: `pending`), the window is built as `truncate_oldest` builds it,
and the run record says why (`RunContext.summary_error`).

Because the tree is immutable, a summary stands for its covered message and all of that
message's ancestors on every branch; rolling back above it, or deleting it, means the
walk no longer meets it and an older summary (or none) is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.domain import Conversation, Message, Role
from app.domain.media_tokens import TokenRule
from app.domain.summary import Summary
from app.domain.tokens import ESTIMATE, TokenCounter
from app.errors import ParleyError
from app.manager.message_cache import CachedMessage, MessageCache, total_cost
from app.manager.summarizer import Summarizer, summary_cost, summary_tokens
from app.packs import PromptPack
from app.stores.base import StateStore

UNBOUNDED = 10**12
SUMMARY_SHARE = 4  # a summary gets at most 1/SUMMARY_SHARE of the history budget


@dataclass
class SummaryOutcome:
    """`history` (newest first) after `summary`; `history is None`: build the window as
    `truncate_oldest` does."""

    history: list[CachedMessage] | None
    summary: Summary | None = None
    pending: bool = False
    error: str | None = None
    created: list[Summary] = field(default_factory=list)


class SummaryWindows:
    def __init__(self, store: StateStore, cache: MessageCache, summarizer: Summarizer) -> None:
        self._store = store
        self._cache = cache
        self.summarizer = summarizer

    async def window(
        self,
        conv: Conversation,
        pack: PromptPack,
        start: str | None,
        pending: Sequence[Message],
        *,
        history_budget: int,
        input_budget: int,
        rule: TokenRule,
        counter: TokenCounter = ESTIMATE,
        hints: Mapping[str, Any],
        write: bool,
    ) -> SummaryOutcome:
        """The summary and the messages after it for a call whose newest committed message
        is `start` (module docstring). `write=False` never calls a provider."""
        lineage = conv.lineage_id
        by_cover = {s.covers_message_id: s for s in await self._store.list_summaries(lineage)}
        tail, reached_root = await self._cache.walk(
            self._store,
            lineage,
            start,
            max_messages=UNBOUNDED,
            token_budget=history_budget,
            rule=rule,
            counter=counter,
            stop_at=by_cover,
        )
        met = by_cover.get(_next_id(tail, start) or "")
        if met is None and reached_root:
            return SummaryOutcome(history=tail)
        if met is not None:
            if summary_cost(met, counter) + total_cost(tail, rule, counter) <= (history_budget):
                return SummaryOutcome(history=tail, summary=met)
        else:
            further, _ = await self._cache.walk(
                self._store,
                lineage,
                _next_id(tail, start),
                max_messages=UNBOUNDED,
                token_budget=UNBOUNDED,
                rule=rule,
                counter=counter,
                stop_at=by_cover,
            )
            tail = tail + further
            met = by_cover.get(_next_id(tail, start) or "")
        max_tokens = history_budget // SUMMARY_SHARE
        keep = _recent(tail, (history_budget - max_tokens) // 2, rule, counter, pending)
        span = [c.message for c in reversed(tail[len(keep) :])]
        if not span or summary_tokens("") >= max_tokens:
            return SummaryOutcome(history=None, error="nothing can be summarized to fit")
        if not write:
            return SummaryOutcome(history=None, pending=True)
        try:
            created = await self.summarizer.extend(
                conv,
                pack,
                met,
                span,
                input_budget=input_budget,
                max_tokens=max_tokens,
                hints=hints,
            )
        except Exception as exc:  # never fails the turn: truncate_oldest for this call
            return SummaryOutcome(history=None, error=_reason(exc))
        summary = created[-1]
        if summary_cost(summary, counter) + total_cost(keep, rule, counter) > (history_budget):
            return SummaryOutcome(history=None, error="the summary does not fit", created=created)
        return SummaryOutcome(history=keep, summary=summary, created=created)


def _next_id(history: list[CachedMessage], start: str | None) -> str | None:
    """The message before the oldest of `history` (newest first) on the path."""
    return history[-1].message.parent_id if history else start


def _recent(
    tail: list[CachedMessage],
    budget: int,
    rule: TokenRule,
    counter: TokenCounter,
    pending: Sequence[Message],
) -> list[CachedMessage]:
    """The newest messages of `tail` within `budget`, cut so the oldest kept is a user
    message. Nothing kept is fine when the call's own messages start with its user
    message; otherwise (a turn continuing after tool results, a regeneration) the newest
    user message is always kept."""
    used = 0
    end = 0
    while end < len(tail) and used + tail[end].cost(rule, counter) <= budget:
        used += tail[end].cost(rule, counter)
        end += 1
    while end > 0 and tail[end - 1].message.role != Role.user:
        end -= 1
    if end == 0 and (not pending or pending[0].role != Role.user):
        users = [i for i, c in enumerate(tail) if c.message.role == Role.user]
        end = users[0] + 1 if users else len(tail)
    return tail[:end]


def _reason(exc: Exception) -> str:
    detail = exc.detail if isinstance(exc, ParleyError) else str(exc) or type(exc).__name__
    return f"summarization failed: {detail}"[:500]


async def path_summaries(
    store: StateStore, cache: MessageCache, conv: Conversation
) -> tuple[list[Summary], list[CachedMessage]]:
    """The lineage's summaries whose covered message is on `conv`'s current path (oldest
    first), and the messages after the deepest of them (newest first)."""
    summaries = await store.list_summaries(conv.lineage_id)
    by_cover = {s.covers_message_id: s for s in summaries}
    tail, _ = await cache.walk(
        store,
        conv.lineage_id,
        conv.head_message_id,
        max_messages=UNBOUNDED,
        token_budget=UNBOUNDED,
        stop_at=by_cover,
    )
    deepest = by_cover.get(_next_id(tail, conv.head_message_id) or "")
    if deepest is None:
        return [], tail
    path = await store.get_path(
        conv.lineage_id, deepest.covers_message_id, limit=deepest.covers_depth + 1
    )
    above = {m.id for m in path}
    return [s for s in summaries if s.covers_message_id in above], tail
