"""Where an edit or a regeneration branches off the message tree (DESIGN §3: "edit a user
message / regenerate a reply = a new sibling under the same parent").

* An edit names a user message; the new user message goes under its parent, at its depth.
* A regeneration names an assistant message (default: the newest one of the current
  path); the new reply goes under its parent, generated from the path up to that parent.
  When that parent is a tool result (the reply that answered a tool round), only the reply
  is generated again: the tool calls before it are not re-run, and the new reply's tool
  budget counts the rounds its turn had used. Regenerating the assistant message that made
  the calls (by `message_id`) generates the whole rest of the turn again, tools included.

A message qualifies when this conversation may see it (`TreeService.visible_message`: on
its path, on its fork origin's path, or one it wrote), else 404 — never another fork's.
"""

from __future__ import annotations

from app.domain import Conversation, Message, Role
from app.errors import NotAnAssistantMessage, NotAUserMessage
from app.manager.tree import TreeService
from app.manager.turn_plan import BranchPoint
from app.stores.base import StateStore

# How far back from the head the default regeneration looks for an assistant message (a
# head that is a tool result is at most one round of calls past one).
REPLY_LOOKBACK = 256


def _beside(message: Message) -> BranchPoint:
    return BranchPoint(parent_id=message.parent_id, depth=message.depth)


class BranchPoints:
    def __init__(self, *, store: StateStore, tree: TreeService) -> None:
        self._store = store
        self._tree = tree

    async def for_edit(self, conv: Conversation, message_id: str) -> BranchPoint:
        message = await self._tree.visible_message(conv, message_id)
        if message.role != Role.user:
            raise NotAUserMessage(
                f"Message {message_id!r} has role {message.role.value!r}; only user "
                f"messages are edited (regenerate a reply with POST "
                f"/conversations/{conv.id}/regenerate)."
            )
        return _beside(message)

    async def for_regenerate(self, conv: Conversation, message_id: str | None) -> BranchPoint:
        if message_id is not None:
            message = await self._tree.visible_message(conv, message_id)
            if message.role != Role.assistant:
                raise NotAnAssistantMessage(
                    f"Message {message_id!r} has role {message.role.value!r}; only "
                    "assistant replies are regenerated (edit a user message instead)."
                )
            return _beside(message)
        return _beside(await self._last_reply(conv))

    async def _last_reply(self, conv: Conversation) -> Message:
        """The newest assistant message of the path: normally the head itself (one read);
        a bounded walk only when the head is not one."""
        if conv.head_message_id is not None:
            head = await self._store.get_messages(conv.lineage_id, [conv.head_message_id])
            if head and head[0].role == Role.assistant:
                return head[0]
            path = await self._store.get_path(
                conv.lineage_id, conv.head_message_id, limit=REPLY_LOOKBACK
            )
            for message in path:  # newest first
                if message.role == Role.assistant:
                    return message
        raise NotAnAssistantMessage(
            "The conversation's current path ends without an assistant reply to regenerate."
        )
