"""Response shapes of the HTTP API (request bodies are in `app.domain.requests`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from app.domain import (
    Checkpoint,
    Conversation,
    FinishReason,
    Message,
    Role,
    Run,
    RunError,
    RunStatus,
    ToolCall,
    Usage,
)
from app.domain.context_item import ContextItem
from app.domain.model import DomainModel
from app.domain.run import PendingApproval, RunContext, RunKind
from app.domain.summary import Summary
from app.packs import PackSummary


class ConversationList(DomainModel):
    data: list[Conversation]
    next_cursor: str | None = None


class MessageList(DomainModel):
    data: list[Message]
    next_cursor: str | None = Field(
        default=None, description="Pass as `before` to get the next older page."
    )


class MessageDetail(Message):
    sibling_ids: list[str] = Field(
        default_factory=list, description="The other children of its parent, oldest first."
    )
    sibling_index: int = Field(
        default=0,
        description="Its position among all children of its parent (itself included), "
        "oldest first, from 0: a UI shows `sibling_index + 1 / sibling_count`.",
    )
    sibling_count: int = Field(default=1, description="Children of its parent, itself included.")
    children_ids: list[str] = Field(default_factory=list)


class PackList(DomainModel):
    data: list[PackSummary]
    next_cursor: str | None = None


class Deleted(DomainModel):
    deleted: int


class TurnResponse(DomainModel):
    run_id: str
    conversation_id: str
    status: Literal["completed", "requires_action"]
    messages: list[Message] = Field(description="Every message committed by the turn.")
    reply: Message
    usage: Usage
    cost_usd: float
    finish_reason: FinishReason | None
    pending_tool_calls: list[ToolCall] = Field(
        default_factory=list,
        description="Calls of client tools: answer them with `POST .../tool-results`.",
    )
    pending_approvals: list[PendingApproval] = Field(
        default_factory=list,
        description="Server-side calls waiting for a human: `POST .../tool-approvals`.",
    )


class RunOut(DomainModel):
    id: str
    conversation_id: str
    kind: RunKind = Field(description="What started the run (`Run.kind`).")
    status: RunStatus
    created_at: datetime
    finished_at: datetime | None
    usage: Usage
    cost_usd: float
    error: RunError | None
    context: RunContext | None = Field(
        default=None, description="Context building of strategy `summarize` (else null)."
    )

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls(
            id=run.id,
            conversation_id=run.conversation_id,
            kind=run.kind,
            status=run.status,
            created_at=run.created_at,
            finished_at=run.finished_at,
            usage=run.usage,
            cost_usd=run.cost_usd,
            error=run.error,
            context=run.context,
        )


class Health(DomainModel):
    status: Literal["ok"]


class Readiness(DomainModel):
    status: Literal["ready"]
    store: Literal["ok"]
    coordination: Literal["ok"]
    packs: int = Field(description="PromptPack versions loaded.")
    providers: list[str] = Field(description="Configured LLM providers.")


class RunCounts(DomainModel):
    started: int
    active: int
    by_status: dict[str, int] = Field(description="Finished runs by final status.")


class TokenCounts(DomainModel):
    input: int
    output: int


class Latency(DomainModel):
    samples: int
    p50: float = Field(description="Seconds (0 without samples).")
    p99: float = Field(description="Seconds (0 without samples).")


class CounterError(DomainModel):
    """The error of one counter kind (`estimate`, `o200k_base`, `cl100k_base`)."""

    samples: int
    mean_error_pct: float
    mean_abs_error_pct: float


class ContextEstimate(DomainModel):
    """How far the context builder's token counter was from provider-reported input
    tokens: error = (estimated - reported) / reported over every call that reported usage
    (negative: the counter was low). `conversations_corrected`: conversations whose budget
    is currently shrunk by the correction (`app.manager.token_count`)."""

    samples: int
    mean_error_pct: float
    mean_abs_error_pct: float
    conversations_corrected: int
    by_counter: dict[str, CounterError] = Field(
        default_factory=dict,
        description="The same error per counter kind: `estimate` (~4 characters per token) "
        "or the exact OpenAI encoding (`o200k_base`, `cl100k_base`).",
    )


class Stats(DomainModel):
    """Counters of this process since it started."""

    runs: RunCounts
    messages_committed: int
    tokens: TokenCounts
    cost_usd: float
    latency_s: Latency
    context_estimate: ContextEstimate


class CheckpointList(DomainModel):
    data: list[Checkpoint]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for older ones.")


class ContextItemList(DomainModel):
    data: list[ContextItem] = Field(description="Oldest first.")
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for newer ones.")


class SummaryList(DomainModel):
    data: list[Summary] = Field(
        description="Summaries whose covered message is on the current path, oldest first; "
        "the next turn uses the deepest (if the history does not fit without it)."
    )


class HeadMoved(Conversation):
    abandoned_head_id: str | None = Field(
        description="The head before the move: `PUT .../head` with it restores that history."
    )


class BranchOut(DomainModel):
    head_message_id: str = Field(description="The branch's leaf (what `PUT .../head` takes).")
    is_head: bool = Field(description="The conversation's current head.")
    fork_point_id: str | None = Field(
        description="The message of the current path it branches off (null for the head, or "
        "a branch from the root)."
    )
    depth: int
    message_count: int = Field(description="Path length with this leaf as the head.")
    role: Role
    preview: str = Field(description="The first 200 characters of the leaf's content.")
    created_at: datetime


class BranchList(DomainModel):
    data: list[BranchOut]
    next_cursor: str | None = None
