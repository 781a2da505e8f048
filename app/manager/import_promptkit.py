"""A PromptKit statestore state as an import plan: its messages as a linear history
(the state's shape: `app.domain.promptkit_state`).

Each message becomes a child of the one before, with a new id. What maps where:
`cost_info` → `usage` and `cost_usd`; `timestamp` → `created_at` (Go's zero time, which
`encoding/json` writes for an unset `time.Time`, counts as unset: the state's
`LastAccessedAt`/`updated_at`, else the import time); `finish_reason` from PromptKit's
vocabulary (`max_output_tokens` → `length`, `tool_use` → `tool_calls`, `safety` →
`content_filter`, others kept in `metadata.finish_reason`); `tool_calls[].args` →
`arguments` (a JSON object); a tool message's `tool_result` → `tool_call_id`, `name`, its
text as `content`, `metadata.is_error`/`latency_ms` (like Parley's own tool messages);
`meta`, `latency_ms`, `reasoning`, `validations` and `thinking` parts → `metadata`.
Media parts keep inline data (`base64`) or a `url`; a `file_path` or `storage_reference`
names bytes on the exporting machine and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from app.domain import MediaRef, Message, Part, Role, ToolCall, new_id, utcnow
from app.domain.limits import DATETIME_RULE, datetime_in_range, in_utc
from app.domain.messages import FinishReason
from app.domain.promptkit_state import PromptKitMessage, PromptKitPart, PromptKitState
from app.domain.usage import ConversationUsage, Usage
from app.manager.import_plan import LOC, ImportPlan, Problem, schema_problems, size_problem
from app.manager.import_records import cost_problems, count_problems
from app.manager.import_tool_rule import unanswering_tool_messages

GO_FIELDS = {"ID", "UserID", "Messages"}
SNAKE_FIELDS = {"conversation_id", "messages"}
FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "max_output_tokens": "length",
    "tool_use": "tool_calls",
    "tool_calls": "tool_calls",
    "safety": "content_filter",
    "content_filter": "content_filter",
}
MEDIA_TYPES = {"image", "audio", "video", "document"}


def is_promptkit_state(raw: Mapping[str, Any]) -> bool:
    return bool(GO_FIELDS & set(raw)) or bool(SNAKE_FIELDS & set(raw))


def _set(when: datetime | None) -> datetime | None:
    """None for Go's zero `time.Time` (0001-01-01T00:00:00Z)."""
    if when is None or when.year <= 1:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _check_time(when: datetime | None, loc: list[Any], problems: list[Problem]) -> None:
    """A set time (not Go's zero) must satisfy the datetime rule of `app.domain.limits`."""
    at = _set(when)
    if at is not None and not datetime_in_range(at):
        problems.append({"loc": loc, "msg": DATETIME_RULE})


def promptkit_plan(
    raw: Mapping[str, Any], max_message_bytes: int
) -> tuple[ImportPlan | None, list[Problem]]:
    try:
        state = PromptKitState.model_validate(raw)
    except ValidationError as exc:
        return None, schema_problems(exc, LOC)
    problems: list[Problem] = []
    go = state.Messages is not None or state.ID is not None or state.UserID is not None
    snake = state.messages is not None or state.conversation_id is not None
    if go and snake:
        problems.append({"loc": LOC, "msg": "mixes PromptKit's Go field names and snake_case"})
    if state.Summaries:
        problems.append(
            {"loc": [*LOC, "Summaries"], "msg": "summaries cannot be imported (not supported)"}
        )
    pk_messages = (state.Messages if go else state.messages) or []
    for name, when in (
        ("LastAccessedAt", state.LastAccessedAt),
        ("created_at", state.created_at),
        ("updated_at", state.updated_at),
    ):
        _check_time(when, [*LOC, name], problems)
    fallback = (
        _set(state.LastAccessedAt) or _set(state.updated_at) or _set(state.created_at) or utcnow()
    )
    key = "Messages" if go else "messages"
    messages: list[Message] = []
    positions: list[int] = []  # each message's index in the state
    usage = ConversationUsage()
    parent: str | None = None
    for i, pk in enumerate(pk_messages):
        message = _message(pk, [*LOC, key, i], parent, i, fallback, problems)
        if message is None:
            continue
        if (problem := size_problem(message, [*LOC, key, i], max_message_bytes)) is not None:
            problems.append(problem)
        messages.append(message)
        positions.append(i)
        usage = usage.plus(message.usage, message.cost_usd)
        parent = message.id
    for at, why in unanswering_tool_messages(messages):
        problems.append({"loc": [*LOC, key, positions[at], "tool_result", "id"], "msg": why})
    if state.total_cost is not None:
        problems.extend(cost_problems(state.total_cost, [*LOC, "total_cost"]))
        usage = usage.model_copy(update={"cost_usd": state.total_cost})
    if problems:
        return None, problems
    return (
        ImportPlan(
            source="promptkit",
            messages=in_utc(messages),  # (offsets kept so far: one representation stored)
            head_message_id=messages[-1].id if messages else None,
            conversation_id=state.ID if go else state.conversation_id,
            user_id=(state.UserID if go else state.user_id) or None,
            system_prompt=(state.SystemPrompt if go else state.system_prompt) or None,
            metadata=dict((state.Metadata if go else state.metadata) or {}),
            usage=usage,
        ),
        [],
    )


def _message(
    pk: PromptKitMessage,
    loc: list[Any],
    parent: str | None,
    depth: int,
    fallback: datetime,
    problems: list[Problem],
) -> Message | None:
    before = len(problems)
    metadata: dict[str, Any] = dict(pk.meta or {})
    if pk.latency_ms:
        metadata["latency_ms"] = pk.latency_ms
    if pk.reasoning is not None:
        metadata["reasoning"] = pk.reasoning
    if pk.validations:
        metadata["validations"] = pk.validations
    _check_time(pk.timestamp, [*loc, "timestamp"], problems)
    parts, text = _parts(pk.parts or [], [*loc, "parts"], metadata, problems)
    content = pk.content or text
    tool_call_id = name = None
    if pk.role == "tool":
        result = pk.tool_result
        if result is None:
            problems.append({"loc": [*loc, "tool_result"], "msg": "a tool message needs one"})
        else:
            tool_call_id, name = result.id, result.name or None
            result_parts, result_text = _parts(
                result.parts or [], [*loc, "tool_result", "parts"], metadata, problems
            )
            parts = parts or result_parts
            content = content or result_text or (result.error or "")
            metadata["is_error"] = bool(result.error)
            if result.latency_ms:
                metadata["latency_ms"] = result.latency_ms
            if result.error_type:
                metadata["error_type"] = result.error_type
    tool_calls = []
    for j, call in enumerate(pk.tool_calls or []):
        args = {} if call.args is None else call.args
        if not isinstance(args, dict):
            problems.append(
                {"loc": [*loc, "tool_calls", j, "args"], "msg": "must be a JSON object"}
            )
            continue
        tool_calls.append(ToolCall(id=call.id, name=call.name, arguments=args))
    finish: FinishReason | None = None
    if pk.finish_reason:
        finish = FINISH_REASONS.get(pk.finish_reason)
        if finish is None:
            metadata["finish_reason"] = pk.finish_reason
    cost = pk.cost_info
    if cost is not None:
        at = [*loc, "cost_info"]
        counts = {"input_tokens": cost.input_tokens, "output_tokens": cost.output_tokens}
        problems.extend(count_problems(counts, at))
        problems.extend(cost_problems(cost.total_cost_usd, [*at, "total_cost_usd"]))
    if len(problems) > before:
        return None
    try:
        return Message(
            id=new_id(),
            parent_id=parent,
            conversation_id="",  # the importing conversation's, set when stored
            role=Role(pk.role),
            content=content,
            parts=parts,
            tool_calls=tool_calls,
            tool_call_id=tool_call_id,
            name=name,
            created_at=_set(pk.timestamp) or fallback,
            usage=Usage.of(cost.input_tokens, cost.output_tokens) if cost else Usage(),
            cost_usd=cost.total_cost_usd if cost else 0.0,
            finish_reason=finish,
            metadata=metadata,
            depth=depth,
        )
    except ValidationError as exc:
        problems.extend(schema_problems(exc, loc))
        return None


def _parts(
    pk_parts: list[PromptKitPart],
    loc: list[Any],
    metadata: dict[str, Any],
    problems: list[Problem],
) -> tuple[list[Part], str]:
    """Parley parts and the text of the text parts. Text-only parts become plain content
    (no parts), the way Parley stores a text message."""
    parts: list[Part] = []
    texts: list[str] = []
    has_media = False
    for j, part in enumerate(pk_parts):
        if part.type == "text":
            texts.append(part.text or "")
            parts.append(Part(type="text", text=part.text or ""))
        elif part.type == "thinking":
            metadata.setdefault("thinking", []).append(part.text or "")
        elif part.type in MEDIA_TYPES:
            media = part.media
            if media is None:
                problems.append({"loc": [*loc, j, "media"], "msg": "a media part needs media"})
            elif media.file_path or media.storage_reference:
                problems.append(
                    {
                        "loc": [*loc, j, "media"],
                        "msg": "file_path/storage_reference name bytes on the exporting "
                        "machine; inline them as data (base64) or give a url",
                    }
                )
            elif not (media.data or media.url):
                problems.append({"loc": [*loc, j, "media"], "msg": "needs data or url"})
            else:
                try:
                    ref = MediaRef(
                        base64=media.data,
                        url=None if media.data else media.url,
                        mime_type=media.mime_type or None,
                        detail=media.detail,
                        caption=media.caption,
                        width=media.width,
                        height=media.height,
                    )
                except ValidationError as exc:
                    problems.extend(schema_problems(exc, [*loc, j, "media"]))
                    continue
                parts.append(Part(type=part.type, media=ref))
                has_media = True
        else:
            problems.append({"loc": [*loc, j, "type"], "msg": f"unknown part type {part.type!r}"})
    return (parts if has_media else []), "".join(texts)
