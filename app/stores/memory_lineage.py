"""The in-memory shape of one lineage (`app.stores.memory`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from app.domain import Checkpoint, Conversation, Message
from app.domain.incarnation import wrote
from app.domain.summary import Summary


@dataclass
class Lineage:
    """The messages of one lineage, with a parent -> children index, and its summaries
    (which go with the message they cover, and with the lineage)."""

    messages: dict[str, Message] = field(default_factory=dict)
    children: dict[str | None, list[str]] = field(default_factory=dict)
    summaries: dict[str, Summary] = field(default_factory=dict)

    def add(self, message: Message) -> None:
        self.messages[message.id] = message
        self.children.setdefault(message.parent_id, []).append(message.id)

    def remove(self, message_id: str) -> None:
        message = self.messages.pop(message_id)
        siblings = self.children.get(message.parent_id, [])
        siblings.remove(message_id)
        if not siblings:
            self.children.pop(message.parent_id, None)
        covering = [s.id for s in self.summaries.values() if s.covers_message_id == message_id]
        for summary_id in covering:
            del self.summaries[summary_id]


def reachable(lineage: Lineage, starts: Iterable[str]) -> set[str]:
    """Ids on the paths from each start toward the root; shared ancestry is walked once."""
    seen: set[str] = set()
    for start in starts:
        current: str | None = start
        while current is not None and current not in seen:
            m = lineage.messages.get(current)
            if m is None:
                break
            seen.add(current)
            current = m.parent_id
    return seen


def unreachable(
    lineage: Lineage,
    others: Sequence[Conversation],
    checkpoints: Mapping[str, Mapping[str, Checkpoint]],
) -> list[Message]:
    """The messages of `lineage` that a deleted conversation leaves to reclaim, given the
    `others` of the lineage that remain and the `checkpoints` by conversation id.

    Candidates are the lineage's messages no remaining conversation of the lineage wrote
    (`incarnation.wrote`: a fork made again under a deleted fork's id did not write the
    deleted one's); those reachable from a remaining conversation's head, checkpoints or
    fork point stay. Messages written by remaining conversations stay even when
    unreachable: they are those conversations' branches."""
    writers = {o.id: o for o in others}
    candidates = [
        m.id
        for m in lineage.messages.values()
        if (w := writers.get(m.conversation_id)) is None or not wrote(w, m)
    ]
    if not candidates:
        return []
    keep = reachable(lineage, _keep_points(others, checkpoints))
    return [lineage.messages[i] for i in candidates if i not in keep]


def _keep_points(
    others: Iterable[Conversation], checkpoints: Mapping[str, Mapping[str, Checkpoint]]
) -> list[str]:
    points: list[str] = []
    for o in others:
        if o.head_message_id is not None:
            points.append(o.head_message_id)
        if o.forked_from is not None and o.forked_from.message_id is not None:
            points.append(o.forked_from.message_id)
        points.extend(
            cp.message_id for cp in checkpoints.get(o.id, {}).values() if cp.message_id is not None
        )
    return points
