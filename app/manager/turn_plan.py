"""What a run executes (`TurnPlan`), what the client asked for (`TurnInput`) and what a
finished turn produced (`TurnOutcome`): the plain data passed between admission
(`app.manager.runs`) and execution (`app.manager.turns`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.coordination.base import TurnLease
from app.domain import Conversation, FinishReason, Message, Part, Run, ToolCall, Usage, new_id
from app.domain.preconditions import IfMatch
from app.domain.requests import ToolDecision, ToolResult
from app.domain.run import PendingApproval, RunError, RunKind


@dataclass(frozen=True)
class BranchPoint:
    """Where a turn's new messages hang when it does not continue the head: under
    `parent_id` (None: a new root), the first of them at `depth`. An edit hangs its user
    message under the edited message's parent; a regeneration hangs its reply under the
    regenerated reply's parent. Its context is the path to `parent_id`, nothing after it."""

    parent_id: str | None
    depth: int


@dataclass
class TurnInput:
    """What the client sent: a user message (`message`, or `edit` at `branch_from`),
    results for pending client-side tools, decisions on pending approvals, or nothing but
    the place of a reply to generate again (`regenerate` at `branch_from`)."""

    kind: RunKind
    content: str = ""
    parts: list[Part] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    tool_results: list[ToolResult] = field(default_factory=list)
    decisions: list[ToolDecision] = field(default_factory=list)
    branch_from: BranchPoint | None = None  # None: after the head
    # the request's `If-Match`: checked when the run is admitted, and again against the
    # conversation as read under the turn lock (a queued turn: once it has the lock)
    if_match: IfMatch | None = None

    @property
    def continues_turn(self) -> bool:
        """Whether the run goes on with a turn already started (its budget of tool rounds
        counts what that turn used before), rather than opening one with a user message."""
        return self.kind in ("tool_results", "tool_approvals", "regenerate")


@dataclass
class TurnPlan:
    run: Run
    conversation_id: str
    lineage_id: str
    input: TurnInput
    # the incarnation the request read (`app.domain.incarnation`); None: unchecked
    conversation_created_at: datetime | None = None
    lease: TurnLease | None = None
    idempotency: tuple[str, str] | None = None  # (scope, key) freed if the run fails
    first_message_id: str = field(default_factory=new_id)  # see `RunRecord`
    executor: str | None = None  # this instance's id (`RunRecord.executor`)
    # why the run is cancelled, when its canceller says (the shutdown drain): recorded as
    # the cancelled run's `error`, so a waiter on any instance answers with it
    cancel_error: RunError | None = None
    # the request's copy of the conversation and the lock's stamp taken before reading it
    # (`TurnLocks.stamp`): the executor uses the copy instead of reading it again when
    # its lease shows nobody took the lock in between (nothing was committed since)
    seen: Conversation | None = None
    seen_stamp: int | None = None
    # `run` changed status (`running`) and is not saved yet: the executor saves it with
    # the run's next event, in one step (`RunLog.save_and_publish`); a run that ends first
    # saves only its end
    status_unsaved: bool = False


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
