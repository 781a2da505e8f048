"""What an import body reads into (`app.manager.import_doc`), shared by both formats."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.domain import Checkpoint, Conversation, Message
from app.domain.context_item import ContextItem
from app.domain.summary import Summary
from app.domain.usage import ConversationUsage
from app.errors import InvalidRequest

Problem = dict[str, Any]
LOC = ["body"]


@dataclass
class ImportPlan:
    """What an import stores. `conversation` is the document's (ids not yet rewritten);
    `messages` are ordered parents first. A PromptKit state has no conversation record:
    `conversation` is None and the service opens one from the pack it is given."""

    source: str  # "parley" | "promptkit"
    messages: list[Message]
    head_message_id: str | None
    conversation: Conversation | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    context_items: list[ContextItem] = field(default_factory=list)
    conversation_id: str | None = None  # the document's id
    user_id: str | None = None
    system_prompt: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    usage: ConversationUsage = field(default_factory=ConversationUsage)


def size_problem(message: Message, loc: list[Any], limit: int) -> Problem | None:
    """A message over `PARLEY_MAX_MESSAGE_BYTES`, measured as a sent one is (text, metadata
    as JSON, media URLs and captions; media bytes have their own limits)."""
    size = message_bytes(message)
    if size <= limit:
        return None
    return {"loc": loc, "msg": f"{size} bytes: over PARLEY_MAX_MESSAGE_BYTES ({limit})"}


def message_bytes(message: Message) -> int:
    size = len(message.content.encode()) + len(json.dumps(message.metadata).encode())
    for part in message.parts:
        if part.media is not None:
            size += len((part.media.url or "").encode()) + len((part.media.caption or "").encode())
    return size


def schema_problems(exc: ValidationError, loc: Sequence[str | int]) -> list[Problem]:
    return [{"loc": [*loc, *e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in exc.errors()]


def refused(problems: list[Problem]) -> InvalidRequest:
    """The 422 of a document with problems: every one listed, nothing imported."""
    return InvalidRequest(
        f"The document was not imported: {len(problems)} problem(s).", errors=problems
    )
