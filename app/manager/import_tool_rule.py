"""The rule an imported tool message must keep: it answers a tool call.

Parley writes a tool message only as the answer to a call of the assistant message before
it (several answers chain one after another under that assistant), and the tool loop
and the providers rely on that shape. A document may claim anything, so both import
formats check it: a tool message without `tool_call_id`, or whose id is not a call of
the nearest assistant message above it (through the other tool messages of the chain),
is refused with the document's other problems.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain import Message, Role


def unanswering_tool_messages(messages: Sequence[Message]) -> list[tuple[int, str]]:
    """(position in `messages`, why) of each tool message that answers no tool call.
    `messages` are ordered parents first; a parent missing from them counts as no call.
    Linear: each message's anchor (the assistant its chain hangs under) is its parent's."""
    by_id = {m.id: m for m in messages}
    anchor: dict[str, Message | None] = {}
    found: list[tuple[int, str]] = []
    for i, message in enumerate(messages):
        if message.role != Role.tool:
            continue
        parent = by_id.get(message.parent_id) if message.parent_id else None
        in_chain = parent is not None and parent.role == Role.tool
        above = anchor.get(parent.id) if parent is not None and in_chain else parent
        anchor[message.id] = above
        if not message.tool_call_id:
            found.append((i, "a tool message needs tool_call_id (the call it answers)"))
        elif above is None or above.role != Role.assistant:
            found.append((i, "a tool message must follow an assistant message with tool_calls"))
        elif message.tool_call_id not in {call.id for call in above.tool_calls}:
            found.append((i, "answers no tool call of the assistant message before it"))
    return found
