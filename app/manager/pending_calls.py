"""Which tool calls a head leaves unanswered, read from the committed path: the newest
assistant message with tool calls, minus the calls that the tool messages after it answer.

This is the one place a conversation's status is derived from a head (DESIGN §5 step 5):
moving the head (PUT head, rollback), forking and importing use `status_at`, and the
tool-results / tool-approvals continuation uses `open_at`. A round that mixes server and
client tools pauses with a *tool* message as its head (the server call's result), so the
head's role alone does not say whether the conversation waits (outside tester T7).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain import ConversationStatus, Message, Role, ToolCall
from app.stores.base import StateStore

WALK_CHUNK = 16  # messages read per store call while walking back over tool messages


@dataclass
class Unanswered:
    """The calls of `assistant` that no tool message between it and `head` answers."""

    assistant: Message
    head: Message
    pending: list[ToolCall]


async def open_at(
    store: StateStore, lineage_id: str, head_id: str, *, chunk: int = WALK_CHUNK
) -> Unanswered | None:
    """None when the path ending at `head_id` waits on no tool call. Reads `chunk`
    messages at a time, until the first message that is not a tool result."""
    answered: set[str] = set()
    head: Message | None = None
    cursor: str | None = head_id
    while cursor is not None:
        path = await store.get_path(lineage_id, cursor, limit=max(chunk, 1))
        if not path:
            return None
        head = head or path[0]
        for message in path:  # newest first
            if message.role == Role.tool and message.tool_call_id:
                answered.add(message.tool_call_id)
                continue
            if message.role == Role.assistant and message.tool_calls:
                pending = [c for c in message.tool_calls if c.id not in answered]
                return Unanswered(message, head, pending) if pending else None
            return None
        cursor = path[-1].parent_id
    return None


async def status_at(store: StateStore, lineage_id: str, head: Message | None) -> ConversationStatus:
    """The status a conversation has with `head` as its head: `requires_action` while a
    tool call of the path's last round is unanswered. No store read unless the head is a
    tool result."""
    if head is None:
        return ConversationStatus.idle
    if head.role == Role.assistant:
        waits = bool(head.tool_calls)
    elif head.role == Role.tool:
        waits = await open_at(store, lineage_id, head.id) is not None
    else:
        waits = False
    return ConversationStatus.requires_action if waits else ConversationStatus.idle
