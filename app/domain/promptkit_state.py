"""PromptKit's statestore state, as PromptKit writes it, for `POST /conversations/import`.

PromptKit (github.com/AltairaLabs/PromptKit) keeps a conversation as
`statestore.ConversationState` (runtime/statestore/types.go): `ID, UserID, Messages,
SystemPrompt, Summaries, TokenCount, LastAccessedAt, Metadata`. The struct has no json
tags, so `encoding/json` writes those Go field names as they are; some exports use
snake_case names instead (`conversation_id, user_id, messages, system_prompt,
token_count, total_cost, metadata, created_at, updated_at`). Both spellings are read.
Messages are `types.Message` (runtime/types/message.go), which does have json tags:
`role, content, parts, tool_calls [{id, name, args}], tool_result {id, name, error, parts,
latency_ms}, timestamp, latency_ms, cost_info {input_tokens, output_tokens,
total_cost_usd, ...}, finish_reason, meta, reasoning, validations`; parts are
`types.ContentPart` (runtime/types/content.go): `type, text, media {data, file_path, url,
storage_reference, mime_type, detail, caption, width, height, ...}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptKitMedia(_Strict):
    data: str | None = Field(default=None, description="Base64 bytes.")
    file_path: str | None = None
    url: str | None = None
    storage_reference: str | None = None
    mime_type: str = ""
    format: str | None = None
    size_kb: int | None = None
    detail: str | None = None
    caption: str | None = None
    duration: int | None = None
    bit_rate: int | None = None
    channels: int | None = None
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    policy_name: str | None = None


class PromptKitPart(_Strict):
    type: str
    text: str | None = None
    media: PromptKitMedia | None = None


class PromptKitToolCall(_Strict):
    id: str
    name: str
    args: Any = None
    provider_metadata: dict[str, str] | None = None


class PromptKitToolResult(_Strict):
    id: str
    name: str = ""
    error: str | None = None
    error_type: str | None = None
    parts: list[PromptKitPart] | None = None
    latency_ms: int = 0


class PromptKitCost(BaseModel):
    """`types.CostInfo`; only the token counts and the total are used."""

    model_config = ConfigDict(extra="allow")

    input_tokens: int = 0
    output_tokens: int = 0
    total_cost_usd: float = 0.0


class PromptKitMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    parts: list[PromptKitPart] | None = None
    tool_calls: list[PromptKitToolCall] | None = None
    tool_result: PromptKitToolResult | None = None
    timestamp: datetime | None = None
    latency_ms: int | None = None
    cost_info: PromptKitCost | None = None
    finish_reason: str | None = None
    meta: dict[str, Any] | None = None
    reasoning: Any = None
    validations: list[Any] | None = None


SNAKE_CASE_FIELDS = (
    "conversation_id", "user_id", "messages", "system_prompt", "token_count", "total_cost",
    "metadata", "created_at", "updated_at",
)  # fmt: skip


def _go_names_only(schema: dict[str, Any]) -> None:
    """The OpenAPI schema lists PromptKit's Go spelling only: with both, generated clients
    would get two properties of the same name (`Messages`/`messages`)."""
    for name in SNAKE_CASE_FIELDS:
        schema["properties"].pop(name, None)
    schema["additionalProperties"] = True


class PromptKitState(BaseModel):
    """A PromptKit statestore state as `encoding/json` writes it (Go field names). Also
    accepted: the snake_case spelling `conversation_id, user_id, messages, system_prompt,
    token_count, total_cost, metadata, created_at, updated_at` (not both in one document).
    Imported as a linear history: every message a child of the one before."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_go_names_only)

    ID: str | None = None
    UserID: str | None = None
    Messages: list[PromptKitMessage] | None = None
    SystemPrompt: str | None = None
    Summaries: list[Any] | None = Field(
        default=None, description="Must be empty: Parley has no summaries to import them into."
    )
    TokenCount: int | None = Field(default=None, description="Derived; recomputed by Parley.")
    LastAccessedAt: datetime | None = None
    Metadata: dict[str, Any] | None = None
    conversation_id: str | None = None
    user_id: str | None = None
    messages: list[PromptKitMessage] | None = None
    system_prompt: str | None = None
    token_count: int | None = Field(default=None, description="Derived; recomputed by Parley.")
    total_cost: float | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
