"""Listing filters of conversations (the API builds them, the stores apply them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from app.domain.conversation import Conversation


@dataclass(frozen=True)
class ConversationFilter:
    """Listing filters; all given ones must match.

    `metadata` compares each key's stored value rendered as text the way PostgreSQL's
    `->>` does (strings as-is; numbers, booleans and null as compact JSON: `3`, `true`),
    with the requested string. Keys absent from the conversation never match.
    """

    user_id: str | None = None
    prefix: str | None = None
    pack_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def matches(self, c: Conversation) -> bool:
        """Whether `c` passes every filter (for backends that filter in Python)."""
        if self.user_id is not None and c.user_id != self.user_id:
            return False
        if self.pack_id is not None and c.pack_id != self.pack_id:
            return False
        if self.prefix is not None and not c.id.startswith(self.prefix):
            return False
        return all(
            key in c.metadata and metadata_text(c.metadata[key]) == wanted
            for key, wanted in self.metadata.items()
        )


def metadata_text(value: object) -> str:
    """The text form `ConversationFilter.metadata` compares against (see its docstring)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
