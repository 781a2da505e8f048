"""Inputs of manager operations (also the HTTP request bodies)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeAliasType

from app.domain.conversation import CONVERSATION_ID_PATTERN, ContextPolicy
from app.domain.media import MediaPolicy
from app.domain.messages import Part


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateConversation(_Input):
    pack_id: str = Field(min_length=1, max_length=100)
    prompt_name: str = Field(min_length=1, max_length=200)
    pack_version: str | None = Field(default=None, description="Defaults to the latest.")
    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Required with a service key; defaults to the key's user with a user key.",
    )
    conversation_id: str | None = Field(default=None, pattern=CONVERSATION_ID_PATTERN)
    variables: dict[str, Any] = Field(default_factory=dict)
    system_prompt: str | None = Field(
        default=None, description="Used verbatim instead of the prompt's rendered template."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    context_policy: ContextPolicy | None = None
    ttl_seconds: int | None = Field(default=None, gt=0)
    media_policy: MediaPolicy | None = Field(
        default=None,
        description="`retain` or `delete` the media only this conversation references when "
        "it is deleted or expires; default PARLEY_MEDIA_POLICY.",
    )
    provider: str | None = None
    model: str | None = Field(default=None, min_length=1, max_length=200)


class PatchConversation(_Input):
    metadata: dict[str, Any] | None = Field(
        default=None, description="Merged into the metadata; a null value removes the key."
    )
    variables: dict[str, Any] | None = Field(
        default=None,
        description="Merged into the variables (null removes); the system prompt is re-rendered.",
    )
    ttl_seconds: int | None = Field(default=None, gt=0)
    context_policy: ContextPolicy | None = None


IfBusy = TypeAliasType("IfBusy", Literal["enqueue", "reject", "interrupt"])
OnDisconnect = TypeAliasType("OnDisconnect", Literal["continue", "cancel"])


class SendMessage(_Input):
    content: str | None = None
    parts: list[Part] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False
    if_busy: IfBusy = "enqueue"
    on_disconnect: OnDisconnect = "continue"


class ToolResult(_Input):
    tool_call_id: str = Field(min_length=1)
    output: Any = None
    is_error: bool = False


class SubmitToolResults(_Input):
    results: list[ToolResult] = Field(min_length=1)
    stream: bool = False
    if_busy: IfBusy = "enqueue"
    on_disconnect: OnDisconnect = "continue"
