"""What an import checks against this service before anything is stored (`importer`):
the document's context items within the limits of items added over HTTP, every media
record its parts and items name being one of the importing user's, and at most
`MAX_TOOL_CALLS` tool calls on one message, each with an id of its own. Each problem is
reported at its location, with the document's others (a 422), and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.domain import Message
from app.domain.context_item import ContextItem
from app.manager.import_plan import Problem
from app.settings import Settings
from app.stores.base import StateStore

# Tool calls one imported assistant message may carry: as many as one `tool-results`
# request answers (`SubmitToolResults.results`). A resumed round answers every open call
# (running those the tool policy admits, `app.manager.tool_loop`), so without a bound a
# document's one message would make a resume write a tool message per call by the
# hundred thousand (review R-F).
MAX_TOOL_CALLS = 128


class ImportChecks:
    """The checks that need the store or the settings."""

    def __init__(self, store: StateStore, settings: Settings) -> None:
        self._store = store
        self._item_max_bytes = settings.context_item_max_kb * 1024
        self._items_max = settings.context_items_max

    def item_problems(self, items: Sequence[ContextItem]) -> list[Problem]:
        """The limits an item added over HTTP has (PARLEY_CONTEXT_ITEM_MAX_KB, _ITEMS_MAX)."""
        problems: list[Problem] = []
        if len(items) > self._items_max:
            problems.append(
                {
                    "loc": ["body", "context_items"],
                    "msg": f"more than {self._items_max} items (PARLEY_CONTEXT_ITEMS_MAX)",
                }
            )
        for i, item in enumerate(items):
            if len(item.content.encode()) > self._item_max_bytes or not item.content.strip():
                problems.append(
                    {
                        "loc": ["body", "context_items", i, "content"],
                        "msg": "empty or over PARLEY_CONTEXT_ITEM_MAX_KB",
                    }
                )
        return problems

    async def item_media_problems(self, items: Sequence[ContextItem], owner: str) -> list[Problem]:
        """An item read from media names one of the importing user's records, as an item
        added over HTTP does (its text is on the item; the reference must not point at
        nothing, or at another user's upload)."""
        problems: list[Problem] = []
        checked: dict[str, bool] = {}
        for i, item in enumerate(items):
            if item.media_id is None:
                continue
            if item.media_id not in checked:
                record = await self._store.get_media(item.media_id)
                checked[item.media_id] = record is not None and record.user_id == owner
            if not checked[item.media_id]:
                problems.append(
                    {
                        "loc": ["body", "context_items", i, "media_id"],
                        "msg": "no such media record of this user here (upload it first)",
                    }
                )
        return problems

    async def media_problems(self, messages: Sequence[Message], owner: str) -> list[Problem]:
        """Parts naming a media record must name one of the importing user's."""
        problems: list[Problem] = []
        checked: dict[str, bool] = {}
        for m in messages:
            for i, part in enumerate(m.parts):
                media_id = part.media.media_id if part.media else None
                if not media_id:
                    continue
                if media_id not in checked:
                    record = await self._store.get_media(media_id)
                    checked[media_id] = record is not None and record.user_id == owner
                if not checked[media_id]:
                    problems.append(
                        {
                            "loc": ["body", "messages", m.id, "parts", i, "media", "media_id"],
                            "msg": "no such media record of this user here (upload it first)",
                        }
                    )
        return problems


def tool_call_problems(messages: Sequence[Message]) -> list[Problem]:
    """At most `MAX_TOOL_CALLS` calls on one message, no call id twice among them: a
    provider refuses a history with a repeated tool call id (every later turn a
    `provider_error`), and the tool loop answers the calls by id. (A tool message answering
    a call already answered on its path: `import_tool_rule`.)"""
    problems: list[Problem] = []
    for m in messages:
        loc: list[Any] = ["body", "messages", m.id, "tool_calls"]
        if len(m.tool_calls) > MAX_TOOL_CALLS:
            problems.append(
                {
                    "loc": loc,
                    "msg": f"{len(m.tool_calls)} tool calls: more than {MAX_TOOL_CALLS} "
                    "on one message",
                }
            )
        seen: set[str] = set()
        for call in m.tool_calls:
            if call.id in seen:
                problems.append(
                    {"loc": loc, "msg": f"tool call id {call.id!r} given twice on one message"}
                )
                break
            seen.add(call.id)
    return problems
