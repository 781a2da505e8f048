"""The rule an imported tool message must keep: it answers a tool call.

Parley writes a tool message only as the answer to a call of the assistant message before
it (several answers chain one after another under that assistant), and the tool loop
and the providers rely on that shape. A document may claim anything, so both import
formats check it: a tool message without `tool_call_id`, or whose id is not a call of
the nearest assistant message above it (through the other tool messages of the chain),
or whose call an earlier tool message of the same chain on its path already answers (a
provider refuses a history answering one tool call id twice: every later turn would be a
`provider_error`), is refused with the document's other problems. Sibling chains (other
branches under the same assistant message) answer the calls each on their own path.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain import Message, Role


def unanswering_tool_messages(messages: Sequence[Message]) -> list[tuple[int, str]]:
    """(position in `messages`, why) of each tool message that answers no tool call, or a
    call already answered above it in its chain. `messages` are ordered parents first; a
    parent missing from them counts as no call. Linear: each message's anchor (the
    assistant its chain hangs under) is its parent's, and each chain is walked once, depth
    first, with the calls answered on the path so far. (Each anchor's call ids are read
    once: a set per tool message made a 20 000-call chain cost 66 s of CPU.)"""
    by_id = {m.id: m for m in messages}
    anchor: dict[str, Message | None] = {}
    found: list[tuple[int, str]] = []
    calls: dict[str, set[str]] = {}  # an anchor's id -> its call ids (read once per anchor)
    answers: set[int] = set()  # positions of the tool messages answering a call of their anchor
    below: dict[str, list[int]] = {}  # a tool message's id -> positions of the chain's next
    starts: list[int] = []  # tool messages right under their assistant message
    for i, message in enumerate(messages):
        if message.role != Role.tool:
            continue
        parent = by_id.get(message.parent_id) if message.parent_id else None
        in_chain = parent is not None and parent.role == Role.tool
        above = anchor.get(parent.id) if parent is not None and in_chain else parent
        anchor[message.id] = above
        if parent is not None and in_chain:
            below.setdefault(parent.id, []).append(i)
        else:
            starts.append(i)
        if not message.tool_call_id:
            found.append((i, "a tool message needs tool_call_id (the call it answers)"))
        elif above is None or above.role != Role.assistant:
            found.append((i, "a tool message must follow an assistant message with tool_calls"))
        elif message.tool_call_id not in _call_ids(above, calls):
            found.append((i, "answers no tool call of the assistant message before it"))
        else:
            answers.add(i)
    found.extend(_answered_twice(messages, starts, below, answers))
    return sorted(found, key=lambda problem: problem[0])


def _call_ids(assistant: Message, calls: dict[str, set[str]]) -> set[str]:
    ids = calls.get(assistant.id)
    if ids is None:
        ids = calls[assistant.id] = {call.id for call in assistant.tool_calls}
    return ids


def _answered_twice(
    messages: Sequence[Message], starts: list[int], below: dict[str, list[int]], answers: set[int]
) -> list[tuple[int, str]]:
    """The tool messages answering a call that a tool message above them in their chain
    answers already (one walk per chain, without recursion: chains can be long)."""
    found: list[tuple[int, str]] = []
    for start in starts:
        answered: set[str] = set()
        stack: list[tuple[int, str | None]] = [(start, None)]  # (position, id to drop after)
        while stack:
            i, drop = stack.pop()
            if i < 0:  # leaving a message: its answer is off the path again
                assert drop is not None
                answered.discard(drop)
                continue
            message = messages[i]
            call_id = message.tool_call_id
            if i in answers and call_id is not None:
                if call_id in answered:
                    found.append((i, f"answers tool call {call_id!r}, already answered above it"))
                else:
                    answered.add(call_id)
                    stack.append((-1, call_id))
            stack.extend((child, None) for child in reversed(below.get(message.id, [])))
    return found
