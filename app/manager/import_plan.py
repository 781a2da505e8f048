"""What an import body reads into (`app.manager.import_doc`), shared by both formats."""

from __future__ import annotations

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


def schema_problems(exc: ValidationError, loc: Sequence[str | int]) -> list[Problem]:
    return [{"loc": [*loc, *e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in exc.errors()]


def refused(problems: list[Problem]) -> InvalidRequest:
    """The 422 of a document with problems: every one listed, nothing imported."""
    return InvalidRequest(
        f"The document was not imported: {len(problems)} problem(s).", errors=problems
    )
