"""The non-streaming response carries the models themselves; its encoder must write
exactly the JSON of their `model_dump(mode="json")` (what the response was built from
before), whatever the messages hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from app.coordination.base import RunRecord, TurnResult
from app.domain import (
    MediaRef,
    Message,
    Part,
    Role,
    Run,
    RunStatus,
    ToolCall,
    Usage,
)
from app.domain.run import PendingApproval
from app.json_text import json_bytes
from app.manager.run_response import turn_response


def _record(status: RunStatus) -> RunRecord:
    when = datetime(2026, 12, 7, 23, 8, 1, 123456, tzinfo=UTC)
    user = Message(
        id="m1",
        parent_id=None,
        conversation_id="c:1",
        role=Role.user,
        content='héllo \u2028 "quoted" \x7f',
        parts=[
            Part(type="text", text="héllo"),
            Part(type="image", media=MediaRef(media_id="x", mime_type="image/png", size_bytes=3)),
        ],
        created_at=when,
        metadata={"nested": {"list": [1, 2.5, None, True]}, "big": 2**53 - 1},
        turn=1,
    )
    reply = Message(
        id="m2",
        parent_id="m1",
        conversation_id="c:1",
        role=Role.assistant,
        content="",
        tool_calls=[ToolCall(id="call_1", name="get_weather", arguments={"city": "Zürich"})],
        created_at=when.astimezone(timezone(timedelta(hours=5, minutes=30))),
        run_id="r1",
        usage=Usage.of(12, 3),
        cost_usd=1.5e-05,
        finish_reason="tool_calls",
        depth=1,
        turn=1,
    )
    run = Run(
        id="r1",
        conversation_id="c:1",
        status=status,
        created_at=when,
        finished_at=when,
        usage=Usage.of(12, 3),
        cost_usd=0.1 + 0.2,
    )
    approval = PendingApproval(
        tool_call_id="call_1", name="get_weather", arguments={"city": "Zürich"}, message="ok?"
    )
    return RunRecord(
        run=run,
        lineage_id="c:1",
        result=TurnResult(
            messages=[user, reply],
            finish_reason="tool_calls",
            pending_tool_calls=reply.tool_calls,
            pending_approvals=[approval],
        ),
    )


def test_the_response_json_is_the_dumped_models_json() -> None:
    for status in (RunStatus.completed, RunStatus.requires_action):
        record = _record(status)
        assert record.result is not None
        dumped = [m.model_dump(mode="json") for m in record.result.messages]
        expected = {
            "run_id": "r1",
            "conversation_id": "c:1",
            "status": status.value,
            "messages": dumped,
            "reply": dumped[1],
            "usage": record.run.usage.model_dump(mode="json"),
            "cost_usd": record.run.cost_usd,
            "finish_reason": "tool_calls",
            "pending_tool_calls": [
                c.model_dump(mode="json") for c in record.result.pending_tool_calls
            ],
            "pending_approvals": [
                a.model_dump(mode="json") for a in record.result.pending_approvals
            ],
        }
        assert json_bytes(turn_response(record)) == json_bytes(expected)
