"""What a run executes (`TurnPlan`), what the client asked for (`TurnInput`) and what a
finished turn produced (`TurnOutcome`): the plain data passed between admission
(`app.manager.runs`) and execution (`app.manager.turns`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.coordination.base import TurnLease
from app.domain import Conversation, FinishReason, Message, Part, Run, ToolCall, Usage, new_id
from app.domain.requests import ToolDecision, ToolResult
from app.domain.run import PendingApproval


@dataclass
class TurnInput:
    """What the client sent: a user message, results for pending client-side tools, or
    decisions on pending approvals."""

    kind: Literal["message", "tool_results", "tool_approvals"]
    content: str = ""
    parts: list[Part] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    tool_results: list[ToolResult] = field(default_factory=list)
    decisions: list[ToolDecision] = field(default_factory=list)


@dataclass
class TurnPlan:
    run: Run
    conversation_id: str
    lineage_id: str
    input: TurnInput
    lease: TurnLease | None = None
    idempotency: tuple[str, str] | None = None  # (scope, key) freed if the run fails
    first_message_id: str = field(default_factory=new_id)  # see `RunRecord`
    executor: str | None = None  # this instance's id (`RunRecord.executor`)


@dataclass
class TurnOutcome:
    messages: list[Message]
    usage: Usage
    cost_usd: float
    finish_reason: FinishReason | None
    pending_tool_calls: list[ToolCall]
    pending_approvals: list[PendingApproval] = field(default_factory=list)


def provider_hints(conv: Conversation, message_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Provider hints from metadata: `mock_*` keys (scripted scenarios, failure modes of
    the mock provider), the message's overriding the conversation's."""
    hints = {k: v for k, v in conv.metadata.items() if k.startswith("mock_")}
    hints.update({k: v for k, v in message_metadata.items() if k.startswith("mock_")})
    return hints
