"""Messages: immutable nodes of a conversation's message tree (DESIGN §3)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field
from typing_extensions import TypeAliasType

from app.domain.model import DomainModel
from app.domain.usage import Usage


class Role(StrEnum):
    system = "system"
    user = "user"
    assistant = "assistant"
    tool = "tool"


FinishReason = TypeAliasType(
    "FinishReason",
    Literal["stop", "length", "tool_calls", "content_filter", "error", "tool_limit"],
)
PartType = TypeAliasType("PartType", Literal["text", "image", "audio", "video", "document", "file"])
MediaDetail = TypeAliasType("MediaDetail", Literal["low", "high", "auto"])


class MediaRef(DomainModel):
    """The PromptPack `MediaReference` of a media part, as sent and as stored.

    A client sends exactly one source: `base64` (the bytes), `url` (passed to the provider
    as is) or `media_id` (from `POST /media`), plus optional `mime_type`, `detail`,
    `caption`. Parley sniffs the type of the bytes (the client's `mime_type` is replaced),
    then keeps media up to `PARLEY_MEDIA_THRESHOLD_KB` inline (`base64` stays) and
    externalizes larger media to the media store (only `media_id` stays); either way the
    stored reference also carries `sha256`, `size_bytes` and, for images, `width` and
    `height` (which token accounting uses).
    """

    media_id: str | None = Field(default=None, max_length=100)
    mime_type: str | None = Field(default=None, max_length=200)
    url: str | None = Field(default=None, max_length=8192)
    base64: str | None = None
    detail: MediaDetail | None = None
    caption: str | None = Field(default=None, max_length=10_000)
    filename: str | None = Field(default=None, max_length=255)
    size_bytes: int | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None


class Part(DomainModel):
    type: PartType
    text: str | None = None
    media: MediaRef | None = None


class ToolCall(DomainModel):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(DomainModel):
    """One message. Never modified after it is committed, so it may be cached by id.

    `depth` is the message's position on its path (0 for a root); it is fixed because the
    parent never changes, and it gives `message_count` of a head in O(1).
    `conversation_id` is the conversation that first wrote the message; forks share it.
    `turn` is fixed for the same reason as `depth` (`app.manager.turn_numbers`).
    """

    id: str
    parent_id: str | None
    conversation_id: str
    role: Role
    content: str = ""
    parts: list[Part] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    created_at: datetime
    run_id: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    finish_reason: FinishReason | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    depth: int = 0
    turn: int | None = Field(
        default=None,
        description="The turn of its path it belongs to: the number of user messages from "
        "the root to it (1 for the first turn); set when committed (null on messages "
        "stored before turn numbers existed).",
    )
