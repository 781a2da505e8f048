"""Inputs of manager operations (also the HTTP request bodies)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)
from typing_extensions import TypeAliasType

from app.domain.checkpoint import CheckpointPolicy
from app.domain.conversation import ContextPolicy
from app.domain.ids import Id
from app.domain.limits import (
    MAX_MODEL_CHARS,
    MAX_PACK_VERSION_CHARS,
    MAX_PROMPT_NAME_CHARS,
    MAX_PROVIDER_CHARS,
    MAX_SYSTEM_PROMPT_CHARS,
    MAX_TTL_S,
    Metadata,
    Variables,
)
from app.domain.media import MediaPolicy
from app.domain.messages import Part

TtlSeconds = Annotated[
    StrictInt | None,
    Field(default=None, gt=0, le=MAX_TTL_S, description=f"At most {MAX_TTL_S} (ten years)."),
]


class _Input(BaseModel):
    """A request body: unknown fields are refused, and so is a boolean given as anything
    but `true`/`false` (`StrictBool`: "yes", 1, "true" are 422, not coerced)."""

    model_config = ConfigDict(extra="forbid")


class CreateConversation(_Input):
    pack_id: Id
    prompt_name: str = Field(min_length=1, max_length=MAX_PROMPT_NAME_CHARS)
    pack_version: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PACK_VERSION_CHARS,
        description="Defaults to the latest.",
    )
    user_id: Id | None = Field(
        default=None,
        description="Required with a service key; defaults to the key's user with a user key.",
    )
    conversation_id: Id | None = Field(
        default=None,
        description="Conversation ids are global: an id another user already has answers 409 "
        "`conversation_exists`. Prefix client-chosen ids with the user (`user:alice:...`) or "
        "let Parley generate one.",
    )
    variables: Variables = Field(default_factory=dict)
    system_prompt: str | None = Field(
        default=None,
        max_length=MAX_SYSTEM_PROMPT_CHARS,
        description="Used verbatim instead of the prompt's rendered template.",
    )
    metadata: Metadata = Field(default_factory=dict)
    context_policy: ContextPolicy | None = None
    checkpoint_policy: CheckpointPolicy | None = Field(
        default=None,
        description="Auto checkpoints and their retention; default from PARLEY_CHECKPOINT_*.",
    )
    ttl_seconds: TtlSeconds = None
    media_policy: MediaPolicy | None = Field(
        default=None,
        description="`retain` or `delete` the media only this conversation references when "
        "it is deleted or expires; default PARLEY_MEDIA_POLICY.",
    )
    provider: str | None = Field(default=None, min_length=1, max_length=MAX_PROVIDER_CHARS)
    model: str | None = Field(default=None, min_length=1, max_length=MAX_MODEL_CHARS)


class PatchConversation(_Input):
    metadata: Metadata | None = Field(
        default=None,
        description="Merged into the metadata; a null value removes the key. The merged "
        "result must stay within the metadata limits.",
    )
    variables: Variables | None = Field(
        default=None,
        description="Merged into the variables (null removes); the system prompt is re-rendered.",
    )
    ttl_seconds: TtlSeconds = Field(
        default=None,
        description="A new TTL, counted from now. Leave it out to keep the current one; null "
        "is refused (422: a TTL cannot be removed). At most ten years.",
    )
    context_policy: ContextPolicy | None = Field(
        default=None,
        description="Merged into the context policy; null resets it to the settings' "
        "defaults (PARLEY_DEFAULT_MAX_INPUT_TOKENS / _RESERVE_OUTPUT_TOKENS).",
    )
    checkpoint_policy: CheckpointPolicy | None = Field(
        default=None,
        description="Merged into the auto checkpoint policy (applies from the next turn); "
        "null resets it to the PARLEY_CHECKPOINT_* defaults.",
    )


IfBusy = TypeAliasType("IfBusy", Literal["enqueue", "reject", "interrupt"])
OnDisconnect = TypeAliasType("OnDisconnect", Literal["continue", "cancel"])


class SendMessage(_Input):
    content: str | None = None
    parts: list[Part] | None = Field(default=None, max_length=100)
    metadata: Metadata = Field(default_factory=dict)
    stream: StrictBool = False
    if_busy: IfBusy = "enqueue"
    on_disconnect: OnDisconnect = "continue"


class EditMessage(SendMessage):
    """A new version of a user message (the same fields and rules as `SendMessage`): the
    run's user message becomes a sibling of the edited one (same parent), the reply
    follows it, and the head moves to that branch."""


class Regenerate(_Input):
    message_id: Id | None = Field(
        default=None,
        description="The assistant reply to generate again: one of this conversation's "
        "tree. Default: the newest assistant message of the current path.",
    )
    stream: StrictBool = False
    if_busy: IfBusy = "enqueue"
    on_disconnect: OnDisconnect = "continue"


class ToolResult(_Input):
    tool_call_id: str = Field(min_length=1, max_length=200)
    output: Any = None
    is_error: StrictBool = False


def _once_per_call(items: list[ToolResult] | list[ToolDecision], what: str) -> None:
    """A call answered or decided twice in one request: which would count is a guess."""
    counts = Counter(item.tool_call_id for item in items)
    twice = sorted(i for i, n in counts.items() if n > 1)
    if twice:
        raise ValueError(f"each tool call may be {what} once per request: {', '.join(twice)}")


class SubmitToolResults(_Input):
    results: list[ToolResult] = Field(
        max_length=128,
        description="One result per pending client-side call. Empty resumes a head whose "
        "only unanswered calls run on the server (they run then).",
    )
    stream: StrictBool = False
    if_busy: IfBusy = "enqueue"
    on_disconnect: OnDisconnect = "continue"

    @field_validator("results")
    @classmethod
    def _each_call_once(cls, results: list[ToolResult]) -> list[ToolResult]:
        _once_per_call(results, "answered")
        return results


class ToolDecision(_Input):
    tool_call_id: str = Field(min_length=1, max_length=200)
    approve: StrictBool
    arguments: dict[str, Any] | None = Field(
        default=None,
        description="Run the call with these arguments instead of the model's (recorded as "
        "edited); only with `approve: true`.",
    )
    reason: str | None = Field(
        default=None,
        max_length=10_000,
        description="Shown to the model as `rejected: <reason>` when `approve` is false.",
    )

    @model_validator(mode="after")
    def _arguments_only_when_approved(self) -> ToolDecision:
        if self.arguments is not None and not self.approve:
            raise ValueError("arguments are only accepted with approve: true")
        return self


class SubmitToolApprovals(_Input):
    decisions: list[ToolDecision] = Field(min_length=1, max_length=128)
    stream: StrictBool = False
    if_busy: IfBusy = "enqueue"
    on_disconnect: OnDisconnect = "continue"

    @field_validator("decisions")
    @classmethod
    def _each_call_once(cls, decisions: list[ToolDecision]) -> list[ToolDecision]:
        _once_per_call(decisions, "decided")
        return decisions


# --- the message tree: checkpoints, rollback, head, fork ---------------------------------


class Compact(_Input):
    """`POST .../compact` takes no fields: its body may be absent or `{}`. Declared so an
    unknown field is refused with 422 like on every other endpoint, not silently ignored."""


class CancelRun(_Input):
    """`POST .../runs/{id}/cancel` takes no fields: its body may be absent or `{}`; an
    unknown field is refused with 422 like on every other endpoint, not silently ignored."""


class DeleteContextItems(_Input):
    """`DELETE .../context/items` deletes every item and takes no fields: a body with any
    (say `{"ids": [...]}`, a selective delete that does not exist) is refused with 422
    before anything is deleted."""


class CreateCheckpoint(_Input):
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    message_id: Id | None = Field(
        default=None,
        description="A message of this conversation's tree (its current path, its fork "
        "origin's path, or one it wrote: an abandoned branch, say); default the head.",
    )
    kind: Literal["manual", "snapshot"] = Field(
        default="manual",
        description="`snapshot` is a light save (typically one per turn); `auto` "
        "checkpoints come only from the conversation's checkpoint_policy.",
    )
    metadata: Metadata = Field(default_factory=dict)


class Rollback(_Input):
    checkpoint_id: Id | None = Field(default=None, description="Exactly one of the two.")
    message_id: Id | None = Field(
        default=None,
        description="A message on the current path (an ancestor of the head); found by a "
        "walk back from the head, so its cost grows with the distance (a checkpoint is O(1)).",
    )


class SetHead(_Input):
    message_id: Id = Field(
        description="A message of this conversation's tree: on its current path, on its "
        "fork origin's path, or one it wrote (an abandoned branch, say)."
    )


class ForkConversation(_Input):
    checkpoint_id: Id | None = Field(
        default=None, description="Fork at this checkpoint's message (at most one of the two)."
    )
    message_id: Id | None = Field(
        default=None,
        description="Fork at this message of the conversation's tree (its current path, its "
        "fork origin's path, or one it wrote); default the head.",
    )
    conversation_id: Id | None = None
    user_id: Id | None = Field(
        default=None,
        description="Owner of the fork (a service key may give it to another user); "
        "default the source's owner.",
    )
    metadata: Metadata | None = Field(default=None, description="Default: the source's.")
    ttl_seconds: TtlSeconds = None


class AddContextItem(_Input):
    """Exactly one of `content` and `media_id`."""

    content: str | None = Field(
        default=None,
        min_length=1,
        description="Text or Markdown, sent as is (at most PARLEY_CONTEXT_ITEM_MAX_KB).",
    )
    media_id: Id | None = Field(
        default=None,
        description="Your uploaded media (POST /media) of type text/plain, text/markdown "
        "(its UTF-8 text) or application/pdf (its text layer) becomes the item's content. "
        "Other types, and a PDF without a readable text layer, are refused with 422 "
        "`unsupported_media`.",
    )
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Where it comes from (file name, URL); sent to the model before the text. "
        "Default: the media's file name, if any.",
    )
    pinned: StrictBool = Field(
        default=False,
        description="Always sent; unpinned items are sent newest first while the items' "
        "budget share (context_policy.max_context_tokens) lasts.",
    )
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _content_or_media(self) -> AddContextItem:
        if (self.content is None) == (self.media_id is None):
            raise ValueError("give exactly one of content and media_id")
        return self
