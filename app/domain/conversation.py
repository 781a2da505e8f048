"""Conversations: a named pointer to the head of a message path (DESIGN §3)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, StrictInt
from typing_extensions import TypeAliasType

from app.domain.checkpoint import CheckpointPolicy
from app.domain.ids import ID_PATTERN
from app.domain.limits import MAX_CONTEXT_MESSAGES, MAX_CONTEXT_TOKENS
from app.domain.media import MediaPolicy
from app.domain.model import DomainModel
from app.domain.usage import ConversationUsage

CONVERSATION_ID_PATTERN = ID_PATTERN


class ConversationStatus(StrEnum):
    idle = "idle"
    running = "running"
    requires_action = "requires_action"


ContextStrategy = TypeAliasType(
    "ContextStrategy", Literal["truncate_oldest", "sliding_window", "summarize", "fail"]
)


MAX_SUMMARY_PROMPT_CHARS = 8000


class Summarizer(DomainModel):
    """Who writes a conversation's summaries: a configured provider, and a model of it
    (default: the provider's default model)."""

    provider: str = Field(min_length=1, max_length=100)
    model: str | None = Field(default=None, min_length=1, max_length=200)


class ContextPolicy(DomainModel):
    """How the context window is built (DESIGN §5 step 3).

    `truncate_oldest`: as much of the path as fits the token budget, newest first.
    `sliding_window`: at most the last `max_messages` messages (this turn's included), then
    the token budget; `max_messages` is required and applies only to this strategy.
    `fail`: everything or a 422 `context_overflow`.
    `summarize`: when the path no longer fits, the oldest span is replaced by a summary
    (`app.manager.context_summary`); `summarizer` and `summary_prompt` apply only to it.
    """

    max_input_tokens: StrictInt = Field(default=8000, gt=0, le=MAX_CONTEXT_TOKENS)
    reserve_output_tokens: StrictInt = Field(default=1024, ge=0, le=MAX_CONTEXT_TOKENS)
    strategy: ContextStrategy = "truncate_oldest"
    max_messages: StrictInt | None = Field(default=None, gt=0, le=MAX_CONTEXT_MESSAGES)
    max_context_tokens: StrictInt | None = Field(
        default=None,
        gt=0,
        le=MAX_CONTEXT_TOKENS,
        description="The context items' budget share (input tokens, every strategy): "
        "pinned items always go, unpinned ones newest first while the share lasts; the "
        "history gets what is left. Smaller than max_input_tokens - reserve_output_tokens. "
        "Default: a quarter of that input budget.",
    )
    summarizer: Summarizer | None = Field(
        default=None,
        description="strategy `summarize`: the configured provider (and model) that writes "
        "the summaries; default the conversation's own.",
    )
    summary_prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SUMMARY_PROMPT_CHARS,
        description="strategy `summarize`: the summarization instructions (system prompt "
        "of the summarization call); default the pack's `fragments.summarize`, else "
        "Parley's built-in prompt.",
    )


class ForkedFrom(DomainModel):
    conversation_id: str
    message_id: str | None


class Conversation(DomainModel):
    """Stored state of one conversation.

    `lineage_id` groups a conversation with its forks (the id of the root conversation);
    every message of a lineage is stored together, which is what lets Redis keep one lineage
    under one hash tag. `version` increases on every change (optimistic concurrency).
    """

    id: str
    user_id: str
    pack_id: str
    pack_version: str
    prompt_name: str
    provider: str
    model: str
    variables: dict[str, Any] = Field(default_factory=dict)
    system_prompt: str = ""
    custom_system_prompt: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    context_policy: ContextPolicy = Field(default_factory=ContextPolicy)
    head_message_id: str | None = None
    message_count: int = 0
    usage: ConversationUsage = Field(default_factory=ConversationUsage)
    forked_from: ForkedFrom | None = None
    status: ConversationStatus = ConversationStatus.idle
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    ttl_seconds: int | None = None
    lineage_id: str
    has_context_items: bool = Field(
        default=False,
        description="Set when the conversation gets its first context item (added, forked or "
        "imported with it); only then does a turn read its items. Stays true after the "
        "last item is deleted.",
    )
    checkpoint_policy: CheckpointPolicy | None = Field(
        default=None,
        description="When auto checkpoints are made and kept; set at creation from the "
        "PARLEY_CHECKPOINT_* settings unless given (null only on conversations stored "
        "before it existed: the settings apply).",
    )
    media_policy: MediaPolicy | None = Field(
        default=None,
        description="What happens to media only this conversation's messages reference when "
        "they are deleted: `retain` or `delete`; null follows PARLEY_MEDIA_POLICY.",
    )
    version: int = 1
