"""Response shapes of the HTTP API (request bodies are in `app.domain.requests`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from app.domain import (
    Conversation,
    FinishReason,
    Message,
    Run,
    RunError,
    RunStatus,
    ToolCall,
    Usage,
)
from app.domain.model import DomainModel
from app.domain.run import PendingApproval
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
    sibling_ids: list[str] = Field(default_factory=list)
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
    status: RunStatus
    created_at: datetime
    finished_at: datetime | None
    usage: Usage
    cost_usd: float
    error: RunError | None

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls(
            id=run.id,
            conversation_id=run.conversation_id,
            status=run.status,
            created_at=run.created_at,
            finished_at=run.finished_at,
            usage=run.usage,
            cost_usd=run.cost_usd,
            error=run.error,
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


class ContextEstimate(DomainModel):
    """How far the context builder's token counter was from provider-reported input
    tokens: error = (estimated - reported) / reported over every call that reported usage
    (negative: the counter was low). `conversations_corrected`: conversations whose budget
    is currently shrunk by the correction (`app.manager.token_count`)."""

    samples: int
    mean_error_pct: float
    mean_abs_error_pct: float
    conversations_corrected: int


class Stats(DomainModel):
    """Counters of this process since it started."""

    runs: RunCounts
    messages_committed: int
    tokens: TokenCounts
    cost_usd: float
    latency_s: Latency
    context_estimate: ContextEstimate
