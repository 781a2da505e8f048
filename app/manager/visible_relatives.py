"""Which siblings and children of a message a conversation may see.

A lineage's messages are shared by all of its forks, which may belong to other users, so
`GET .../messages/{id}` lists only relatives this conversation can reach (the rule of
`TreeService.visible_message`): messages it wrote (`incarnation.wrote`), and messages on
its current path or on its fork origin's path. Another fork's edit, regeneration or turn
is never listed (nor counted in `sibling_count`).

In a conversation that was never forked from nor into every relative is its own and
nothing is read; otherwise at most two bounded ids-only walks (`ancestor_id`, from the head
and from the fork point down to the message's depth) find the relatives that lie on those
paths.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain import Conversation, Message
from app.domain.incarnation import wrote
from app.stores.base import StateStore


async def _path_ids_near(store: StateStore, conv: Conversation, depth: int) -> set[str]:
    """Ids of the messages at `depth` and `depth + 1` on the conversation's current path
    and on its fork origin's path."""
    tips: list[tuple[str, int]] = []
    if conv.head_message_id is not None:
        tips.append((conv.head_message_id, conv.message_count - 1))
    origin = conv.forked_from
    if origin is not None and origin.message_id is not None:
        found = await store.get_messages(conv.lineage_id, [origin.message_id])
        if found:
            tips.append((found[0].id, found[0].depth))
    ids: set[str] = set()
    for tip_id, tip_depth in tips:
        if tip_depth < depth:
            continue
        # ids only (review R8): the path's message at depth + 1 (if any), then its parent
        if tip_depth == depth:
            ids.add(tip_id)
            continue
        below = await store.ancestor_id(conv.lineage_id, tip_id, steps=tip_depth - depth - 1)
        if below is None:
            continue
        ids.add(below)
        at = await store.ancestor_id(conv.lineage_id, below, steps=1)
        if at is not None:
            ids.add(at)
    return ids


async def visible_relatives(
    store: StateStore,
    conv: Conversation,
    message: Message,
    siblings: Sequence[Message],
    children: Sequence[Message],
) -> tuple[list[Message], list[Message]]:
    """`siblings` (the message among them) and `children` less those `conv` cannot see."""
    if all(wrote(conv, m) for m in (*siblings, *children)):
        return list(siblings), list(children)
    shared = await _path_ids_near(store, conv, message.depth)

    def visible(m: Message) -> bool:
        return m.id == message.id or wrote(conv, m) or m.id in shared

    return [m for m in siblings if visible(m)], [m for m in children if visible(m)]
