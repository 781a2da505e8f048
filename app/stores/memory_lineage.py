"""The in-memory shape of one lineage (`app.stores.memory`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from app.domain import Message
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
