"""The JSON shapes of run events (DESIGN §7)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.domain import Run, RunError, RunStatus, ToolCall
from app.domain.run import PendingApproval


def dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json")  # type: ignore[no-any-return]


def terminal_event(
    run: Run,
    pending_tool_calls: list[ToolCall],
    pending_approvals: Sequence[PendingApproval] = (),
) -> tuple[str, dict[str, Any]]:
    """The terminal SSE event of a finished run (exactly one per run, DESIGN §7)."""
    if run.status == RunStatus.completed:
        return "run.completed", {
            "run": dump(run),
            "usage": dump(run.usage),
            "cost_usd": run.cost_usd,
        }
    if run.status == RunStatus.requires_action:
        return "run.requires_action", {
            "run": dump(run),
            "pending_tool_calls": [dump(c) for c in pending_tool_calls],
            "pending_approvals": [dump(a) for a in pending_approvals],
        }
    if run.status == RunStatus.cancelled:
        return "run.cancelled", {"run": dump(run)}
    error = run.error or RunError(code="internal_error", detail="unknown")
    return "run.failed", {"run": dump(run), "error": dump(error)}
