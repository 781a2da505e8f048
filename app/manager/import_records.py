"""What an imported record must satisfy beyond its schema: the values a Parley instance
would itself have written (outside tester T6/T7). Without these a document could carry
negative or inconsistent accounting (`input_tokens: -5`, `cost_usd: -1e300`, a total that is
not input + output), ids no URL can address, a `turn` its path contradicts, or names
longer than any request may give; each is reported at its loc with the document's other
problems, and nothing is stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from app.domain import Conversation, Message
from app.domain.ids import ID_PATTERN, ID_RULE
from app.domain.limits import (
    MAX_COST_USD,
    MAX_MODEL_CHARS,
    MAX_PACK_VERSION_CHARS,
    MAX_PROMPT_NAME_CHARS,
    MAX_PROVIDER_CHARS,
)
from app.domain.summary import Summary
from app.domain.usage import Usage
from app.manager.turn_numbers import number_turns

Problem = dict[str, Any]
# The caps a create request puts on these (`app.domain.requests.CreateConversation`).
NAME_CAPS = {
    "provider": MAX_PROVIDER_CHARS,
    "model": MAX_MODEL_CHARS,
    "prompt_name": MAX_PROMPT_NAME_CHARS,
    "pack_version": MAX_PACK_VERSION_CHARS,
}


def count_problems(counts: dict[str, int], loc: Sequence[str | int]) -> list[Problem]:
    """Token counts are non-negative."""
    return [
        {"loc": [*loc, name], "msg": "must not be negative"}
        for name, value in counts.items()
        if value < 0
    ]


def usage_problems(usage: Usage, loc: Sequence[str | int]) -> list[Problem]:
    """Token counts are non-negative and the total is at least input + output (what
    Parley writes). `loc` is the usage object's."""
    problems = count_problems(
        {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
        },
        loc,
    )
    # at least their sum: providers may count more (reasoning tokens) in the total they
    # report, and Parley stores that total, so its own exports carry it (review R9)
    if usage.total_tokens < usage.input_tokens + usage.output_tokens:
        problems.append(
            {"loc": [*loc, "total_tokens"], "msg": "must be at least input_tokens + output_tokens"}
        )
    return problems


def cost_problems(cost_usd: float, loc: Sequence[str | int]) -> list[Problem]:
    if math.isfinite(cost_usd) and 0 <= cost_usd <= MAX_COST_USD:
        return []
    return [{"loc": list(loc), "msg": f"must be within 0..{MAX_COST_USD:g}"}]


def id_problems(value: str | None, loc: Sequence[str | int]) -> list[Problem]:
    if value is None or re.fullmatch(ID_PATTERN, value):
        return []
    return [{"loc": list(loc), "msg": f"not an id: {ID_RULE}"}]


def _name_problems(fields: dict[str, str], loc: Sequence[str | int]) -> list[Problem]:
    return [
        {"loc": [*loc, name], "msg": f"must be 1-{NAME_CAPS[name]} characters"}
        for name, value in fields.items()
        if not 1 <= len(value) <= NAME_CAPS[name]
    ]


def conversation_problems(conv: Conversation, loc: Sequence[str | int]) -> list[Problem]:
    at = [*loc, "conversation"]
    fields = {
        "provider": conv.provider,
        "model": conv.model,
        "prompt_name": conv.prompt_name,
        "pack_version": conv.pack_version,
    }
    return [
        *usage_problems(conv.usage, [*at, "usage"]),
        *cost_problems(conv.usage.cost_usd, [*at, "usage", "cost_usd"]),
        *_name_problems(fields, at),
        # ids the API addresses (a user outside the rule could never be listed, exported
        # or erased; on PostgreSQL a longer one was a 500: tester T13)
        *id_problems(conv.user_id, [*at, "user_id"]),
        *id_problems(conv.lineage_id, [*at, "lineage_id"]),
    ]


def message_problems(message: Message, loc: Sequence[str | int]) -> list[Problem]:
    return [
        *usage_problems(message.usage, [*loc, "usage"]),
        *cost_problems(message.cost_usd, [*loc, "cost_usd"]),
        *id_problems(message.run_id, [*loc, "run_id"]),
        *id_problems(message.conversation_id, [*loc, "conversation_id"]),
    ]


def summary_problems(summary: Summary, loc: Sequence[str | int]) -> list[Problem]:
    return [
        *usage_problems(summary.usage, [*loc, "usage"]),
        *id_problems(summary.conversation_id, [*loc, "conversation_id"]),
        *_name_problems({"provider": summary.provider, "model": summary.model}, loc),
    ]


def turn_problems(
    ordered: Sequence[Message], given: dict[str, tuple[int, int | None]], loc: Sequence[str | int]
) -> list[Problem]:
    """A message's `turn` follows from its path (`number_turns`); a document that gives
    another is inconsistent (null: written before turn numbers existed, numbered on import).
    `given` maps a message id to (its index in the document, the turn it carried)."""
    problems: list[Problem] = []
    for m in number_turns(ordered):
        index, turn = given[m.id]
        if turn is not None and turn != m.turn:
            problems.append(
                {"loc": [*loc, "messages", index, "turn"], "msg": f"should be {m.turn}"}
            )
    return problems
