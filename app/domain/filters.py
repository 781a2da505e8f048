"""Listing filters of conversations (the API builds them, the stores apply them)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal

from app.domain.conversation import Conversation
from app.domain.limits import MAX_JSON_INT

# The text of an integer as PostgreSQL's `->>` renders one (no leading zeros), of at most
# 16 digits: stored integers are within ±MAX_JSON_INT
_INTEGER_TEXT = re.compile(r"0|-?[1-9][0-9]{0,15}")


@dataclass(frozen=True)
class ConversationFilter:
    """Listing filters; all given ones must match.

    `metadata` compares each key's stored value rendered as text the way PostgreSQL's
    `->>` does (`metadata_text`) with the requested string. Keys absent from the
    conversation never match, nor do object and array values (their text differs between
    backends: key order, spacing); the API refuses such filters (`object_filter_problem`).
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
            key in c.metadata
            and not isinstance(c.metadata[key], dict | list)
            and metadata_text(c.metadata[key]) == wanted
            for key, wanted in self.metadata.items()
        )


def metadata_text(value: object) -> str:
    """The text form `ConversationFilter.metadata` compares against, a scalar's as
    PostgreSQL's `->>` renders it: strings as-is; integers, booleans and null as JSON
    (`3`, `true`, `null`); floats in positional notation with the digits of their
    shortest round-trip form (`1.5`, `3.0`, `0.0000001` for 1e-07, `0.0` for -0.0),
    as PostgreSQL's `numeric` writes the JSON number Parley stored."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        text = format(Decimal(repr(value)), "f")
        return text.removeprefix("-") if value == 0 else text
    return json.dumps(value, separators=(",", ":"))


def integer_filter(wanted: str) -> int | None:
    """The integer whose `metadata_text` is `wanted`, if a stored one can be."""
    if not _INTEGER_TEXT.fullmatch(wanted):
        return None
    value = int(wanted)
    return value if abs(value) <= MAX_JSON_INT else None


def float_filter(wanted: str) -> float | None:
    """The float whose `metadata_text` is `wanted`, if there is one."""
    try:
        value = float(wanted)
    except ValueError:
        return None
    return value if math.isfinite(value) and metadata_text(value) == wanted else None


def object_filter_problem(wanted: str) -> str | None:
    """Why a metadata filter value cannot be used: it is a JSON object or array (those
    values never match, see `ConversationFilter`). None when it can."""
    if not wanted.startswith(("{", "[")):
        return None
    try:
        parsed = json.loads(wanted)
    except (ValueError, RecursionError):  # (RecursionError: `[[[[...` past Python's stack)
        return None
    if isinstance(parsed, dict | list):
        return "object and array values cannot be filtered on; filter on a scalar value"
    return None
