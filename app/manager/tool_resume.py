"""Continuing a turn paused on tools: client results (`POST .../tool-results`) and
approval decisions (`POST .../tool-approvals`).

What is pending is read from the committed path, never from the run that paused: the last
assistant message with tool calls, minus the calls that tool messages after it already
answer. Of those, a call waits for a decision when its id is in the message's
`metadata.approval_required` or its tool's binding asks for consent now (`OpenCalls.kinds`);
the other calls of server-side tools run on the server as the turn resumes (as far as the
tool policy admits: `ToolLoop.resume`), the rest wait for a client's result. Each
submission answers its kind; when another kind is still pending the run commits the new
tool messages (in call order) and pauses again without calling the model.

Two approvers deciding the same calls race for the conversation's turn lock (shared by
every instance); the second finds the calls answered and fails with 409
`approval_conflict`, so exactly one decision wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain import Conversation, ConversationStatus, Message, ToolCall
from app.domain.requests import ToolDecision, ToolResult
from app.errors import ApprovalConflict, InvalidState
from app.manager.pending_calls import open_at
from app.manager.tool_loop import APPROVALS_KEY, RoundResult, ToolLoop
from app.stores.base import StateStore
from app.tools import Approval, ToolOutcome, ToolRegistry

PATH_SLACK = 2


@dataclass
class OpenCalls:
    """The unanswered tool calls of the conversation's head."""

    assistant: Message
    head: Message
    pending: list[ToolCall]

    def kinds(self, loop: ToolLoop) -> CallKinds:
        """Who answers each open call. A call waits for a human's decision when its round
        recorded so (`metadata.approval_required`) *or* its binding asks for one now: the
        stored message may predate the consent, or be written by an import, which can
        leave the mark out (review R-F). The binding's consent message wins."""
        stored = self.assistant.metadata.get(APPROVALS_KEY)
        marked = stored if isinstance(stored, dict) else {}
        kinds = CallKinds()
        for call in self.pending:
            consent = loop.consent(call)
            if consent is None and call.id in marked:
                message = marked[call.id]
                stored_text = message if isinstance(message, str) else None
                consent = Approval.of(call.name, stored_text).message
            if consent is not None:
                kinds.approvals[call.id] = consent
                kinds.approval.append(call)
            elif loop.runs_on_server(call):
                kinds.server.append(call)
            else:
                kinds.client.append(call)
        return kinds


@dataclass
class CallKinds:
    """The open calls by who answers them: a human's decision (`approvals`: id -> the
    consent message), the server, the client."""

    approvals: dict[str, str] = field(default_factory=dict)
    approval: list[ToolCall] = field(default_factory=list)
    server: list[ToolCall] = field(default_factory=list)
    client: list[ToolCall] = field(default_factory=list)


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


def still_pending(
    loop: ToolLoop, calls: OpenCalls, kinds: CallKinds, answered: set[str]
) -> RoundResult:
    left = RoundResult()
    for call in calls.pending:
        if call.id in answered:
            continue
        if call.id in kinds.approvals:
            left.pending_approvals.append(loop.pending_approval(call, kinds.approvals[call.id]))
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
    """Tool messages for a client's results (and the open server calls, which run), in
    call order, and what is still pending after them. The request names each call once
    at most (`SubmitToolResults`)."""
    kinds = calls.kinds(loop) if calls else CallKinds()
    refused = sorted({r.tool_call_id for r in results} & {c.id for c in kinds.server})
    if refused:
        raise InvalidState(
            "These tool calls run on the server; their results never come from the client: "
            + ", ".join(refused),
            errors=[{"loc": ["body", "results"], "msg": f"server-side: {refused}"}],
        )
    if not kinds.client and not kinds.server:
        if kinds.approval:
            waiting = sorted(kinds.approvals)
            raise InvalidState(
                "The pending tool calls wait for approval; POST the decisions to "
                f"/conversations/{conversation_id}/tool-approvals: " + ", ".join(waiting),
                errors=[{"loc": ["body", "results"], "msg": f"awaiting approval: {waiting}"}],
            )
        raise InvalidState("The conversation has no pending tool calls.")
    assert calls is not None
    given = {r.tool_call_id: r for r in results}
    if set(given) != {c.id for c in kinds.client}:
        raise InvalidState(
            "Results must answer exactly the pending tool calls.",
            errors=[
                {
                    "loc": ["body", "results"],
                    "msg": f"pending: {sorted(c.id for c in kinds.client)}",
                },
            ],
        )
    outcomes = {}
    for call in kinds.client:
        result = given[call.id]
        bound = loop.toolset.get(call.name)
        bad = registry.check_client_result(bound, result.output) if bound else None
        outcomes[call.id] = bad or ToolOutcome(result.output, result.is_error, 0.0)
    messages = await loop.resume(calls.assistant, calls.head, server=kinds.server, results=outcomes)
    return messages, still_pending(loop, calls, kinds, set(given) | {c.id for c in kinds.server})


async def answer_decisions(
    loop: ToolLoop,
    calls: OpenCalls | None,
    decisions: list[ToolDecision],
) -> tuple[list[Message], RoundResult]:
    """Run or reject the decided calls (and the open server calls, which run), in call
    order; what is still pending after them. Calls not named stay pending; a decision
    naming a call that does not wait for one is 409. The request names each call once
    at most (`SubmitToolApprovals`)."""
    kinds = calls.kinds(loop) if calls else CallKinds()
    by_id = {d.tool_call_id: d for d in decisions}
    unknown = [i for i in by_id if i not in kinds.approvals]
    if unknown:
        raise ApprovalConflict(
            "No approval is pending for these tool calls (already decided, or never asked): "
            + ", ".join(sorted(unknown)),
            errors=[{"loc": ["body", "decisions"], "msg": f"pending: {sorted(kinds.approvals)}"}],
        )
    assert calls is not None
    messages = await loop.resume(calls.assistant, calls.head, server=kinds.server, decisions=by_id)
    return messages, still_pending(loop, calls, kinds, set(by_id) | {c.id for c in kinds.server})
