"""Which context items a provider call carries, and how (DESIGN §6).

Items are sent after the system prompt (before the summary and the history), one system
message each, oldest first. Their budget share is `context_policy.max_context_tokens`
(default `DEFAULT_SHARE_DIVISOR`: a quarter of the input budget). Pinned items always go:
with strategy `fail`, pinned items over the share are a 422 `context_overflow`; with the
other strategies they go anyway and take the history's room (pinned means always), and
only a window that cannot hold them at all is a `context_overflow`. Unpinned items are
taken newest first, each one that still fits the share's remainder, so one large item
does not shut out the smaller older ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from app.domain import Conversation
from app.domain.context_item import ContextItem
from app.domain.tokens import ESTIMATE, TokenCounter
from app.errors import ContextOverflow
from app.manager.token_count import provider_message_tokens
from app.providers.base import ProviderMessage

DEFAULT_SHARE_DIVISOR = 4


def item_message(content: str, source: str | None) -> ProviderMessage:
    """An item as the window carries it: a system message, its source first."""
    header = f"[Context item: {source}]\n" if source else "[Context item]\n"
    return ProviderMessage(role="system", content=header + content)


def item_tokens(content: str, source: str | None, counter: TokenCounter = ESTIMATE) -> int:
    """Input tokens of the item as sent (text only, so the same by every media rule);
    the stored `ContextItem.tokens` are the estimate's."""
    return provider_message_tokens(item_message(content, source), "openai", counter)


def item_cost(item: ContextItem, counter: TokenCounter) -> int:
    return item_tokens(item.content, item.source, counter) if counter.exact else item.tokens


def items_share(conversation: Conversation, input_budget: int) -> int:
    policy = conversation.context_policy
    if policy.max_context_tokens is not None:
        return min(policy.max_context_tokens, input_budget)
    return input_budget // DEFAULT_SHARE_DIVISOR


@dataclass
class ItemsWindow:
    messages: list[ProviderMessage] = field(default_factory=list)
    included_ids: list[str] = field(default_factory=list)  # oldest first
    dropped_ids: list[str] = field(default_factory=list)
    tokens: int = 0
    share: int = 0


def select_items(
    conversation: Conversation,
    items: Sequence[ContextItem],
    input_budget: int,
    counter: TokenCounter = ESTIMATE,
) -> ItemsWindow:
    """The items of the next call (`items` oldest first, as the store lists them), their
    sizes by `counter`."""
    share = items_share(conversation, input_budget)
    if not items:
        return ItemsWindow(share=share)
    cost = {i.id: item_cost(i, counter) for i in items}
    pinned = [i for i in items if i.pinned]
    pinned_tokens = sum(cost[i.id] for i in pinned)
    strict = conversation.context_policy.strategy == "fail"
    if pinned_tokens > (share if strict else input_budget):
        limit = "their share (max_context_tokens)" if strict else "the input budget"
        raise ContextOverflow(
            f"The {len(pinned)} pinned context items need ~{pinned_tokens} tokens but "
            f"{limit} is {share if strict else input_budget} tokens (input budget "
            f"{input_budget}); unpin or delete some."
        )
    chosen = {i.id for i in pinned}
    left = share - pinned_tokens
    for item in reversed(items):
        if not item.pinned and cost[item.id] <= left:
            chosen.add(item.id)
            left -= cost[item.id]
    kept = [i for i in items if i.id in chosen]
    return ItemsWindow(
        messages=[item_message(i.content, i.source) for i in kept],
        included_ids=[i.id for i in kept],
        dropped_ids=[i.id for i in items if i.id not in chosen],
        tokens=sum(cost[i.id] for i in kept),
        share=share,
    )
