"""Response shapes of the HTTP API (request bodies are in `app.domain.requests`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.domain import Conversation, FinishReason, Message, Run, ToolCall, Usage
from app.packs import PackSummary


class ConversationList(BaseModel):
    data: list[Conversation]
    next_cursor: str | None = None


class MessageList(BaseModel):
    data: list[Message]
    next_cursor: str | None = Field(
        default=None, description="Pass as `before` to get the next older page."
    )


class MessageDetail(Message):
    sibling_ids: list[str] = Field(default_factory=list)
    children_ids: list[str] = Field(default_factory=list)


class PackList(BaseModel):
    data: list[PackSummary]
    next_cursor: str | None = None


class Deleted(BaseModel):
    deleted: int


class TurnResponse(BaseModel):
    run_id: str
    conversation_id: str
    status: Literal["completed", "requires_action"]
    messages: list[Message] = Field(description="Every message committed by the turn.")
    reply: Message
    usage: Usage
    cost_usd: float
    finish_reason: FinishReason | None
    pending_tool_calls: list[ToolCall] = Field(default_factory=list)


class RunOut(BaseModel):
    id: str
    conversation_id: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    usage: Usage
    cost_usd: float
    error: dict[str, Any] | None

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls(
            id=run.id,
            conversation_id=run.conversation_id,
            status=run.status.value,
            created_at=run.created_at,
            finished_at=run.finished_at,
            usage=run.usage,
            cost_usd=run.cost_usd,
            error=run.error.model_dump() if run.error else None,
        )


PROBLEM = {
    "content": {
        "application/problem+json": {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "code": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object"}},
                },
                "required": ["type", "title", "status", "detail", "code"],
            }
        }
    }
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": "Problem", **PROBLEM} for status in statuses}
