"""What `GET /conversations/{id}/context` reports: the next provider call, dry run."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.domain.model import DomainModel
from app.domain.summary import Summary


class ContextBudget(DomainModel):
    """Input tokens by section, by the counter the context builder budgets with
    (`app.manager.token_count`). `input_budget` = (`max_input_tokens` - `reserved_output`)
    / `correction`, where `correction` >= 1 is how much more the provider reported than
    the counter for this conversation; `total` never exceeds it. `context_items` and
    `summary` are 0 while the conversation has none."""

    max_input_tokens: int
    reserved_output: int
    correction: float
    input_budget: int
    system: int
    context_items: int = 0
    context_items_share: int = Field(
        default=0,
        description="The items' budget share: `context_policy.max_context_tokens`, default "
        "input_budget / 4 (pinned items may exceed it, except with strategy `fail`).",
    )
    summary: int = 0
    history: int
    pending: int = Field(
        description="The message(s) of the turn itself (the `content` asked about)."
    )
    tools: int
    media: int = Field(
        description="Media parts of history and pending, included in those sections."
    )
    total: int


class ContextPreview(DomainModel):
    conversation_id: str
    provider: str
    model: str
    strategy: str
    budget: ContextBudget
    included_message_ids: list[str] = Field(
        description="Committed messages the request carries, oldest first."
    )
    dropped: int = Field(
        description="Messages of the current path left out of the window (those the "
        "summary in use stands for included)."
    )
    context_item_ids: list[str] = Field(
        default_factory=list,
        description="Context items the request carries (after the system prompt), oldest "
        "first: every pinned one, then unpinned ones newest first while their share lasts.",
    )
    dropped_context_item_ids: list[str] = Field(
        default_factory=list,
        description="Unpinned context items left out: the share "
        "(`budget.context_items_share`) was used.",
    )
    summary: Summary | None = Field(
        default=None,
        description="The summary the request carries (strategy `summarize`), else null.",
    )
    summary_pending: bool = Field(
        default=False,
        description="strategy `summarize`: the history no longer fits and a new summary "
        "would be written first. A dry run never calls a provider, so `request_body` is "
        "then the fallback the turn would send if summarizing failed (truncate_oldest); "
        "the real next request carries the new summary instead. When false, "
        "`request_body` is byte for byte the next request.",
    )
    request_body: dict[str, Any] = Field(
        description="The exact JSON body the provider adapter would send for the next turn "
        "(the mock provider: its provider-neutral request)."
    )
