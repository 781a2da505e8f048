"""The uncommitted messages a turn starts from, by the kind of its input.

A message or an edit opens with the user's message at the branch point; tool results and
approvals open with the tool messages answering the head's pending calls
(`app.manager.tool_resume`); a regeneration opens with none. Separate from
`app.manager.turns` (the run's execution: lock, provider rounds, commit, end) because it
is the one step that differs per kind of turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from app.domain import Conversation, ConversationStatus, Message, Role
from app.errors import InvalidState
from app.manager.events import dump
from app.manager.tool_loop import RoundResult, ToolLoop
from app.manager.tool_resume import answer_decisions, answer_results, open_calls
from app.manager.turn_plan import BranchPoint, TurnPlan
from app.stores.base import StateStore
from app.tools import ToolRegistry


async def opening_messages(
    plan: TurnPlan,
    conv: Conversation,
    branch: BranchPoint,
    loop: ToolLoop,
    number: int,
    *,
    store: StateStore,
    tools: ToolRegistry,
    clock: Callable[[], datetime],
    publish: Callable[[TurnPlan, str, dict[str, Any]], Awaitable[None]],
) -> tuple[list[Message], RoundResult]:
    """The uncommitted messages the turn starts from (the user message at the branch
    point, the tool messages answering the head's pending calls, or none for a
    regeneration) and what is still pending after them (then the run pauses again
    without calling the model). An edit may leave a branch that waits on tools: that
    branch keeps waiting (`PUT .../head` selects it again)."""
    now = clock()
    run_id = plan.run.id
    if plan.input.kind == "regenerate":
        return [], RoundResult()
    if plan.input.kind in ("message", "edit"):
        if plan.input.kind == "message" and conv.status == ConversationStatus.requires_action:
            raise InvalidState(
                "The conversation is waiting on tools; POST results to "
                f"/conversations/{conv.id}/tool-results or decisions to "
                f"/conversations/{conv.id}/tool-approvals first."
            )
        user = Message(
            id=plan.first_message_id,
            parent_id=branch.parent_id,
            conversation_id=conv.id,
            role=Role.user,
            content=plan.input.content,
            parts=plan.input.parts,
            created_at=now,
            run_id=run_id,
            metadata=plan.input.metadata,
            depth=branch.depth,
            turn=number,
        )
        await publish(plan, "message.created", {"message": dump(user)})
        return [user], RoundResult()
    calls = await open_calls(store, conv, loop.budget.max_calls)
    if plan.input.kind == "tool_approvals":
        return await answer_decisions(loop, calls, plan.input.decisions)
    return await answer_results(loop, tools, calls, plan.input.tool_results, conv.id)
