"""The server-side tool loop of a turn (DESIGN §5 step 4, §12).

`TurnExecutor` calls the provider; after every reply that asks for tools, `ToolLoop` runs
one *round*:

* the calls of server-side tools (`mock`, `live`, `exec`, `mcp`) run concurrently, bounded
  by the registry's process-wide slots; each becomes a `tool` message (in call order) whose
  output the model sees next round. A failure, timeout or unknown tool is a result with
  `is_error: true`, never an error of the run;
* calls of client tools are left pending (`run.requires_action`, `POST .../tool-results`);
* calls of tools that need a human's approval are left pending as `pending_approvals`
  (`POST .../tool-approvals`); the reply's `metadata.approval_required` maps their ids to
  the consent message, so the pause survives a restart and is read back from the path;
* the same call (name and arguments) made three times in a row is not run: the model gets
  an error result and no further call is admitted in the turn (`ToolBudget.stop_reason`).

Tool messages carry `name`, and in `metadata` `is_error`, `latency_ms` and the tool's
`mode`; a decided approval adds `approval` (`approved`, `edited`, `original_arguments`,
`reason`). Events per call, in call order: `tool_call.completed {tool_call_id, output,
is_error, latency_ms}` then `message.created` with the tool message.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from app.domain import Conversation, Message, Part, Role, ToolCall, new_id
from app.domain.requests import ToolDecision
from app.domain.run import PendingApproval
from app.manager.events import dump
from app.manager.stats import Stats
from app.manager.tool_policy import ToolBudget
from app.tools import ToolOutcome, ToolSet
from app.tools.limits import storable

REPEAT_LIMIT = 3  # the same call this many times in a row is not run
APPROVALS_KEY = "approval_required"

Publish = Callable[[str, dict[str, Any]], Awaitable[None]]


def approval_note(call: ToolCall, decision: ToolDecision) -> dict[str, Any]:
    """A decided call's `metadata.approval` on its tool message."""
    edited = decision.arguments is not None and decision.arguments != call.arguments
    note: dict[str, Any] = {"approved": decision.approve, "edited": edited}
    if decision.reason is not None:
        note["reason"] = decision.reason
    if edited:
        note["original_arguments"] = call.arguments
    return note


def call_signature(call: ToolCall) -> str:
    return call.name + "\x00" + json.dumps(call.arguments, sort_keys=True, default=str)


NOT_JSON_OUTPUT = "the tool's output is not standard JSON (NaN or Infinity); it was dropped"


def output_text(output: Any) -> str:
    """The tool message's text of `output`; ValueError for a NaN or an infinity anywhere in
    it, which no JSON holds (an MCP server's structured content parsed by its SDK, say):
    written as `NaN` it reached the stored message and the run's events, which PostgreSQL
    refused and an EventSource's JSON.parse throws on (tester-2 U4)."""
    return output if isinstance(output, str) else json.dumps(output, allow_nan=False)


@dataclass
class RoundResult:
    """What one round produced: tool messages of the calls that ran, and what is left for
    the client (results of client tools, decisions on approvals)."""

    messages: list[Message] = field(default_factory=list)
    pending_calls: list[ToolCall] = field(default_factory=list)
    pending_approvals: list[PendingApproval] = field(default_factory=list)

    @property
    def paused(self) -> bool:
        return bool(self.pending_calls or self.pending_approvals)


@dataclass
class _Answer:
    call: ToolCall
    outcome: ToolOutcome
    outcome_label: str  # for /metrics: ok | error | stopped | rejected
    metadata: dict[str, Any] = field(default_factory=dict)
    timed: bool = True  # False for a client's result (no latency is known)


class ToolLoop:
    def __init__(
        self,
        *,
        toolset: ToolSet,
        budget: ToolBudget,
        conversation: Conversation,
        run_id: str,
        publish: Publish,
        stats: Stats,
        clock: Callable[[], datetime],
        first_message_id: str | None = None,
        turn: int | None = None,
    ) -> None:
        self._first_id = first_message_id  # the run's first message (see `RunRecord`)
        self._turn = turn  # the turn number of the run's messages (`Message.turn`)
        self.toolset = toolset
        self.budget = budget
        self._conv = conversation
        self._run_id = run_id
        self._publish = publish
        self._stats = stats
        self._now = clock
        self._last_signature: str | None = None
        self._streak = 0

    def tool_choice(self, offered: str | None) -> str | None:
        """The `tool_choice` of the next provider call, given the prompt's."""
        if offered is None:
            return None
        if self.budget.exhausted:
            return "none"
        if offered == "required" and self.budget.rounds_used > 0:
            return "auto"
        return offered

    def annotate(self, reply: Message) -> Message:
        """The reply in its final form: which calls wait for approval, and which limit
        ended a turn whose every call was refused."""
        metadata = dict(reply.metadata)
        approvals = {}
        for call in reply.tool_calls:
            consent = self.consent(call)
            if consent is not None:
                approvals[call.id] = consent
        if approvals:
            metadata[APPROVALS_KEY] = approvals
        if reply.finish_reason == "tool_limit":
            metadata["tool_limit"] = self.budget.limit or "max_tool_calls_per_turn"
        if metadata == reply.metadata:
            return reply
        return reply.model_copy(update={"metadata": metadata})

    def consent(self, call: ToolCall) -> str | None:
        """The consent message when `call`'s binding asks a human's approval before the
        server runs it; None when it runs (or goes to the client) without one."""
        bound = self.toolset.get(call.name)
        if bound is not None and bound.approval is not None and bound.runs_on_server:
            return bound.approval.message
        return None

    def pending_approval(self, call: ToolCall, message: str) -> PendingApproval:
        bound = self.toolset.get(call.name)
        return PendingApproval(
            tool_call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            message=message,
            categories=list(bound.categories) if bound else [],
        )

    async def run_round(self, reply: Message) -> RoundResult:
        """Run the server-side calls of `reply`; leave client calls and approvals pending."""
        result = RoundResult()
        approvals: dict[str, str] = reply.metadata.get(APPROVALS_KEY, {})
        to_run: list[int] = []  # positions: a provider may repeat a call id
        answers: dict[int, _Answer] = {}
        for i, call in enumerate(reply.tool_calls):
            bound = self.toolset.get(call.name)
            if call.id in approvals:
                result.pending_approvals.append(self.pending_approval(call, approvals[call.id]))
            elif bound is not None and not bound.runs_on_server:
                result.pending_calls.append(call)
            elif self._repeated(call):
                answers[i] = self._stopped(call)
            else:
                to_run.append(i)
        self.budget.rounds_used += 1
        self.budget.calls_used += len(reply.tool_calls)
        ran = await self._execute([reply.tool_calls[i] for i in to_run])
        answers.update(zip(to_run, ran, strict=True))
        result.messages = await self.record([answers[i] for i in sorted(answers)], reply)
        return result

    def runs_on_server(self, call: ToolCall) -> bool:
        """Whether the server answers `call` (as `run_round` does): a server-side tool, or
        one the toolset no longer offers (answered "unknown tool"); never the client."""
        bound = self.toolset.get(call.name)
        return bound is None or bound.runs_on_server

    async def resume(
        self,
        round_: Message,
        parent: Message,
        *,
        server: Sequence[ToolCall] = (),
        results: Mapping[str, ToolOutcome] | None = None,
        decisions: Mapping[str, ToolDecision] | None = None,
    ) -> list[Message]:
        """Answer open calls of `round_`, the round a continued turn resumes (`POST
        .../tool-results`, `.../tool-approvals`): the client's `results` of client calls,
        the `decisions` on calls that wait for approval (an approved call runs, with the
        decision's arguments when given; a rejected one is answered `rejected: <reason>`)
        and the `server` calls, which run. The server runs only what the tool policy
        admits, as in a live round: the first `budget.round_admits` calls of the round
        (the others are answered `not run`, see `app.manager.tool_policy`) and no call
        made `REPEAT_LIMIT` times in a row. They are counted in the budget already (read
        from the path). Tool messages in call order, chained under `parent`."""
        results = results or {}
        decisions = decisions or {}
        to_server = {c.id for c in server}
        answers: dict[int, _Answer] = {}
        to_run: list[tuple[int, ToolCall]] = []  # positions: a provider may repeat a call id
        notes: dict[int, dict[str, Any]] = {}
        for i, call in enumerate(round_.tool_calls):
            admitted = i < self.budget.round_admits
            if call.id in results:
                outcome = results[call.id]
                label = "error" if outcome.is_error else "ok"
                answers[i] = _Answer(call, outcome, label, {"mode": "client"}, timed=False)
            elif call.id in decisions:
                decision = decisions[call.id]
                notes[i] = approval_note(call, decision)
                if not decision.approve:
                    reason = decision.reason or "no reason given"
                    answers[i] = _Answer(
                        call, ToolOutcome.failure(f"rejected: {reason}"), "rejected"
                    )
                elif not admitted:
                    answers[i] = self._over_budget(call)
                else:
                    arguments = call.arguments if decision.arguments is None else decision.arguments
                    to_run.append((i, call.model_copy(update={"arguments": arguments})))
            elif call.id in to_server:
                if not admitted:
                    answers[i] = self._over_budget(call)
                elif self._repeated(call):
                    answers[i] = self._stopped(call)
                else:
                    to_run.append((i, call))
        ran = await self._execute([call for _, call in to_run])
        answers.update(zip((i for i, _ in to_run), ran, strict=True))
        ordered = []
        for i in sorted(answers):  # (an edited call ran with other arguments: its own call)
            answer = replace(answers[i], call=round_.tool_calls[i])
            if i in notes:
                answer.metadata["approval"] = notes[i]
            ordered.append(answer)
        return await self.record(ordered, parent)

    def _repeated(self, call: ToolCall) -> bool:
        signature = call_signature(call)
        self._streak = self._streak + 1 if signature == self._last_signature else 1
        self._last_signature = signature
        return self._streak >= REPEAT_LIMIT

    def _stopped(self, call: ToolCall) -> _Answer:
        self.budget.stop_reason = "repeated_call"
        message = (
            f"not run: {call.name} was called {REPEAT_LIMIT} times in a row with the same "
            "arguments; answer with the results you have"
        )
        return _Answer(call, ToolOutcome.failure(message), "stopped")

    def _over_budget(self, call: ToolCall) -> _Answer:
        self.budget.dropped += 1
        limit = self.budget.round_limit or "max_tool_calls_per_turn"
        message = (
            f"not run: over the prompt's tool_policy ({limit}) for this turn; answer with "
            "the results you have"
        )
        return _Answer(call, ToolOutcome.failure(message), "stopped")

    async def _execute(self, calls: Sequence[ToolCall]) -> list[_Answer]:
        outcomes = await self.toolset.execute_all([(c.name, c.arguments) for c in calls])
        answers = []
        for call, outcome in zip(calls, outcomes, strict=True):
            bound = self.toolset.get(call.name)
            metadata: dict[str, Any] = {"mode": bound.mode} if bound else {}
            label = "error" if outcome.is_error else "ok"
            answers.append(_Answer(call, outcome, label, metadata))
        return answers

    async def record(self, answers: Sequence[_Answer], parent: Message) -> list[Message]:
        """Tool messages for `answers` chained under `parent`, their events and metrics."""
        messages = []
        for answer in answers:
            call, output = answer.call, storable(answer.outcome.output)
            is_error = answer.outcome.is_error
            try:
                text = output_text(output)
            except ValueError:
                output = text = NOT_JSON_OUTPUT
                is_error = True
            outcome = ToolOutcome(output, is_error, answer.outcome.latency_ms)
            bound = self.toolset.get(call.name)
            self._stats.tool_call(
                bound.name if bound else "unknown",
                answer.outcome_label,
                outcome.latency_ms / 1000 if answer.timed else None,
            )
            metadata: dict[str, Any] = {"is_error": outcome.is_error}
            if answer.timed:
                metadata["latency_ms"] = outcome.latency_ms
            metadata.update(answer.metadata)
            completed: dict[str, Any] = {
                "tool_call_id": call.id,
                "output": outcome.output,
                "is_error": outcome.is_error,
                "latency_ms": outcome.latency_ms if answer.timed else None,
            }
            message_id, self._first_id = self._first_id or new_id(), None
            message = Message(
                id=message_id,
                parent_id=parent.id,
                conversation_id=self._conv.id,
                role=Role.tool,
                content=text,
                parts=[Part(type="text", text=text)],
                tool_call_id=call.id,
                name=call.name,
                created_at=self._now(),
                run_id=self._run_id,
                metadata=metadata,
                depth=parent.depth + 1,
                turn=self._turn,
            )
            await self._publish("tool_call.completed", completed)
            await self._publish("message.created", {"message": dump(message)})
            messages.append(message)
            parent = message
        return messages
