"""Runs: one execution of a turn (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from app.domain.model import DomainModel
from app.domain.usage import Usage
from app.unstorable import storable_text

RunKind = Literal["message", "tool_results", "tool_approvals", "edit", "regenerate"]
"""What started a run: a new user message, results for pending client-side tools,
decisions on pending approvals, an edited user message (a sibling of it), a regenerated
reply (a sibling of it)."""


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    requires_action = "requires_action"

    @property
    def terminal(self) -> bool:
        return self not in (RunStatus.queued, RunStatus.running)


class RunError(DomainModel):
    code: str
    # made storable: a provider's or tool's error text may hold a lone surrogate or NUL,
    # and a record that cannot be encoded could never be saved (review R12)
    detail: Annotated[str, AfterValidator(storable_text)]


class RunContext(DomainModel):
    """What context building did in a run with strategy `summarize` (DESIGN §6)."""

    summary_id: str | None = Field(
        default=None, description="The summary the run's last provider call carried."
    )
    summaries_created: list[str] = Field(
        default_factory=list, description="Summaries this run wrote (extensions, in order)."
    )
    summary_error: str | None = Field(
        default=None,
        description="Why summarizing failed: the run fell back to truncate_oldest for that "
        "call instead of failing.",
    )


class Run(DomainModel):
    id: str
    conversation_id: str
    kind: RunKind = Field(
        default="message",
        description="`edit` and `regenerate` runs write a new branch: their first message is "
        "a sibling of the edited user message or of the regenerated reply.",
    )
    status: RunStatus = RunStatus.queued
    created_at: datetime
    finished_at: datetime | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    error: RunError | None = None
    context: RunContext | None = Field(
        default=None, description="Context building of strategy `summarize` (else null)."
    )


class PendingApproval(DomainModel):
    """A server-side tool call waiting for a human's decision (`POST .../tool-approvals`)."""

    tool_call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    message: str = Field(description="The consent message of the tool's binding.")
    categories: list[str] = Field(default_factory=list)


# The events that end a run's stream: exactly one, and nothing after it (DESIGN §7).
TERMINAL_EVENTS = frozenset({"run.completed", "run.failed", "run.cancelled", "run.requires_action"})


@dataclass(frozen=True)
class RunEvent:
    """One SSE event of a run: `seq` is 1, 2, ... within the run."""

    seq: int
    type: str
    data: dict[str, Any]
