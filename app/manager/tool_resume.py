"""Continuing a turn paused on tools: client results (`POST .../tool-results`) and
approval decisions (`POST .../tool-approvals`).

What is pending is read from the committed path, never from the run that paused: the last
assistant message with tool calls, minus the calls that tool messages after it already
answer. Of those, the ids in its `metadata.approval_required` wait for a decision, the
rest for a client's result. Each submission answers its kind; when the other kind is still
pending the run commits the new tool messages and pauses again without calling the model.

Two approvers deciding the same calls race for the conversation's turn lock (shared by
every instance); the second finds the calls answered and fails with 409
`approval_conflict`, so exactly one decision wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain import Conversation, ConversationStatus, Message, ToolCall
from app.domain.requests import ToolDecision, ToolResult
from app.errors import ApprovalConflict, InvalidState
from app.manager.pending_calls import open_at
from app.manager.tool_loop import APPROVALS_KEY, RoundResult, ToolLoop
from app.stores.base import StateStore
from app.tools import ToolOutcome, ToolRegistry

PATH_SLACK = 2


@dataclass
class OpenCalls:
    """The unanswered tool calls of the conversation's head."""

    assistant: Message
    head: Message
    pending: list[ToolCall]

    @property
    def approvals(self) -> dict[str, str]:
        found = self.assistant.metadata.get(APPROVALS_KEY)
        return found if isinstance(found, dict) else {}

    def client_calls(self, loop: ToolLoop) -> list[ToolCall]:
        return [
            c for c in self.pending if c.id not in self.approvals and not loop.runs_on_server(c)
        ]

    def server_calls(self, loop: ToolLoop) -> list[ToolCall]:
        return [c for c in self.pending if c.id not in self.approvals and loop.runs_on_server(c)]

    @property
    def approval_calls(self) -> list[ToolCall]:
        return [c for c in self.pending if c.id in self.approvals]


async def open_calls(store: StateStore, conv: Conversation, max_calls: int) -> OpenCalls | None:
    """None when the conversation is not waiting on tools."""
    if conv.status != ConversationStatus.requires_action or conv.head_message_id is None:
        return None
    found = await open_at(
        store, conv.lineage_id, conv.head_message_id, chunk=max_calls + PATH_SLACK
    )
    if found is None:
        return None
    return OpenCalls(assistant=found.assistant, head=found.head, pending=found.pending)


def still_pending(loop: ToolLoop, calls: OpenCalls, answered: set[str]) -> RoundResult:
    left = RoundResult()
    for call in calls.pending:
        if call.id in answered:
            continue
        if call.id in calls.approvals:
            left.pending_approvals.append(loop.pending_approval(call, calls.approvals[call.id]))
        else:
            left.pending_calls.append(call)
    return left


async def answer_results(
    loop: ToolLoop,
    registry: ToolRegistry,
    calls: OpenCalls | None,
    results: list[ToolResult],
    conversation_id: str,
) -> tuple[list[Message], RoundResult]:
    """Tool messages for a client's results, and what is still pending after them."""
    wanted = calls.client_calls(loop) if calls else []
    server = calls.server_calls(loop) if calls else []
    refused = sorted({r.tool_call_id for r in results} & {c.id for c in server})
    if refused:
        raise InvalidState(
            "These tool calls run on the server; their results never come from the client: "
            + ", ".join(refused),
            errors=[{"loc": ["body", "results"], "msg": f"server-side: {refused}"}],
        )
    if not wanted and not server:
        if calls and calls.approval_calls:
            raise InvalidState(
                "The pending tool calls wait for approval; POST the decisions to "
                f"/conversations/{conversation_id}/tool-approvals."
            )
        raise InvalidState("The conversation has no pending tool calls.")
    assert calls is not None
    given = {r.tool_call_id: r for r in results}
    if set(given) != {c.id for c in wanted}:
        raise InvalidState(
            "Results must answer exactly the pending tool calls.",
            errors=[
                {"loc": ["body", "results"], "msg": f"pending: {sorted(c.id for c in wanted)}"},
            ],
        )
    outcomes = []
    for call in wanted:
        result = given[call.id]
        bound = loop.toolset.get(call.name)
        bad = registry.check_client_result(bound, result.output) if bound else None
        outcomes.append((call, bad or ToolOutcome(result.output, result.is_error, 0.0)))
    messages = await loop.record_client(outcomes, calls.head) if outcomes else []
    messages += await loop.run_calls(server, messages[-1] if messages else calls.head)
    return messages, still_pending(loop, calls, set(given) | {c.id for c in server})


async def answer_decisions(
    loop: ToolLoop,
    calls: OpenCalls | None,
    decisions: list[ToolDecision],
) -> tuple[list[Message], RoundResult]:
    """Run or reject the decided calls; what is still pending after them. Calls not
    named stay pending; a decision naming a call that does not wait for one is 409."""
    waiting = {c.id: c for c in calls.approval_calls} if calls else {}
    ids = [d.tool_call_id for d in decisions]
    if len(set(ids)) != len(ids):
        raise InvalidState(
            "Each tool call may be decided once per request.",
            errors=[{"loc": ["body", "decisions"], "msg": "duplicate tool_call_id"}],
        )
    unknown = [i for i in ids if i not in waiting]
    if unknown:
        raise ApprovalConflict(
            "No approval is pending for these tool calls (already decided, or never asked): "
            + ", ".join(sorted(unknown)),
            errors=[{"loc": ["body", "decisions"], "msg": f"pending: {sorted(waiting)}"}],
        )
    assert calls is not None
    decided = [c for c in calls.approval_calls if c.id in set(ids)]
    messages = await loop.decide(decided, decisions, calls.head)
    server = calls.server_calls(loop)
    messages += await loop.run_calls(server, messages[-1] if messages else calls.head)
    return messages, still_pending(loop, calls, set(ids) | {c.id for c in server})
