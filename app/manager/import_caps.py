"""The caps the API applies to free-form fields, applied to an imported document too.

An import must not hold a record that no request could have created: `metadata` and
`variables` maps within their `MapLimits` (keys, key length, nesting, size) and a context
item's `source` within the length `POST .../context` allows. Each problem is reported at
its location, with the others of the document, and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.domain.context_item import ContextItem
from app.domain.conversation import Conversation
from app.domain.limits import METADATA_LIMITS, VARIABLES_LIMITS, MapLimits
from app.domain.messages import Message

MAX_SOURCE_CHARS = 500  # AddContextItem.source

Problem = dict[str, Any]


def _map(
    limits: MapLimits, value: Mapping[str, Any], loc: Sequence[str | int]
) -> Iterable[Problem]:
    msg = limits.problem(value)
    if msg:
        yield {"loc": [*loc, limits.name], "msg": msg}


def field_cap_problems(
    loc: Sequence[str | int],
    conversation: Conversation | None,
    messages: Iterable[tuple[int, Message]],
    items: Iterable[tuple[int, ContextItem]],
) -> list[Problem]:
    problems: list[Problem] = []
    if conversation is not None:
        at = [*loc, "conversation"]
        problems.extend(_map(METADATA_LIMITS, conversation.metadata, at))
        problems.extend(_map(VARIABLES_LIMITS, conversation.variables, at))
    for i, message in messages:
        problems.extend(_map(METADATA_LIMITS, message.metadata, [*loc, "messages", i]))
    for i, item in items:
        at = [*loc, "context_items", i]
        problems.extend(_map(METADATA_LIMITS, item.metadata, at))
        if item.source is not None and len(item.source) > MAX_SOURCE_CHARS:
            problems.append(
                {"loc": [*at, "source"], "msg": f"at most {MAX_SOURCE_CHARS} characters"}
            )
    return problems
