"""The non-streaming response of a finished run (DESIGN §6 `POST .../messages` 200)."""

from __future__ import annotations

from typing import Any

from app.coordination.base import RunRecord
from app.domain import Role, RunStatus
from app.errors import RunCancelled, error_for_code, error_from_problem


def turn_response(record: RunRecord) -> dict[str, Any]:
    """The response body of a terminal run, or the run's error raised (a failed run's
    problem as recorded, a cancelled one its recorded reason, else `run_cancelled`). Its
    messages, usage and pending items are the models themselves: the response's encoder
    (`app.json_text`, pydantic-core) writes each once, the same JSON as their
    `model_dump(mode="json")`, without a dict built for each first."""
    run = record.run
    if run.status == RunStatus.failed:
        if record.problem is not None:
            raise error_from_problem(record.problem)
        assert run.error is not None
        raise error_for_code(run.error.code, run.error.detail)
    if run.status == RunStatus.cancelled:
        if run.error is not None:  # its canceller's reason: `shutting_down` (a drain)
            raise error_for_code(run.error.code, run.error.detail)
        raise RunCancelled(f"Run {run.id} was cancelled; nothing was committed.")
    assert record.result is not None
    messages = record.result.messages
    # the final assistant message (a run that only answered some pending calls and
    # paused again has none: then its last tool message)
    reply = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i].role == Role.assistant), -1
    )
    return {
        "run_id": run.id,
        "conversation_id": run.conversation_id,
        "status": run.status.value,
        "messages": list(messages),
        "reply": messages[reply],
        "usage": run.usage,
        "cost_usd": run.cost_usd,
        "finish_reason": record.result.finish_reason,
        "pending_tool_calls": list(record.result.pending_tool_calls),
        "pending_approvals": list(record.result.pending_approvals),
    }
