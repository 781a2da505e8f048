"""Input limits and the text rule every string the API takes must satisfy.

One place defines what "acceptable input" means, so every backend sees the same thing:

* Text: no NUL (`\\u0000`) and no lone UTF-16 surrogate (`\\ud83d` without its pair)
  anywhere: body, path, query, headers. PostgreSQL `jsonb`/`text` cannot hold NUL and no
  backend can encode a lone surrogate as UTF-8, so refusing both (422) is the one rule that
  holds everywhere; nothing is stored.
* JSON bodies: at most `MAX_JSON_DEPTH` nested containers, integers within +/-(2^53-1) (the
  range every JSON client represents exactly), no NaN/Infinity.
* Datetimes a client sends (import documents, PromptKit states): within years
  `MIN_DATETIME`..`MAX_DATETIME` once in UTC. Near year 1 or 9999 an offset pushes a value
  past Python's datetime range when the stores convert it to UTC (an OverflowError, so a
  500), and PostgreSQL turns such values into `-infinity` that no read can decode. Once
  within the rule they are stored as aware UTC (`in_utc`; naive: taken as UTC, as the SQL
  stores always took them), so every backend holds one representation: the memory store
  never orders naive with aware values and Redis never holds an offset that a text compare
  of the same instant would miss (review R-G, R-C).
* `metadata` and `variables` maps: bounded key count, key length, nesting and serialized
  size; a PATCH is checked on the merged result, so merging cannot grow past the caps.

The README "Limits" section lists these numbers; keep them in sync.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel

from app.unstorable import UNSTORABLE

MAX_JSON_DEPTH = 32
MAX_JSON_INT = 2**53 - 1
MAX_TTL_S = 10 * 365 * 24 * 3600  # ten years
# A run event's seq is a 64-bit integer column on PostgreSQL: larger values cannot be
# compared with it (a 500 from `?after=2**63`), and no run has that many events.
MAX_EVENT_SEQ = 2**63 - 1
MAX_SYSTEM_PROMPT_CHARS = 200_000
# Names a create request gives (`CreateConversation`); packs and imports are held to them.
MAX_PROMPT_NAME_CHARS = 200
MAX_PACK_VERSION_CHARS = 100
MAX_PROVIDER_CHARS = 100
MAX_MODEL_CHARS = 200
MAX_CONTEXT_TOKENS = 10_000_000
MAX_CONTEXT_MESSAGES = 1_000_000
# An imported cost (a message's, a conversation's total): far above any real bill, and low
# enough that sums of many stay finite.
MAX_COST_USD = 1e12

# Datetimes from clients: 1970-01-01T00:00:00Z <= t < 9001-01-01T00:00:00Z (years 1970-9000
# in UTC). Far from both ends of Python's datetime range, so no offset conversion overflows.
MIN_DATETIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_DATETIME = datetime(9001, 1, 1, tzinfo=UTC)
DATETIME_RULE = "must be within years 1970-9000 in UTC"
T = TypeVar("T")


def capped_int(digits: str, cap: int = MAX_EVENT_SEQ) -> int:
    """A string of ASCII digits from a header (a version, a byte position, an event seq)
    as an int no larger than `cap`. Any length: Python refuses `int()` of more than 4,300
    digits (a ValueError, so a 500, outside tester T1/T4/T5), and a number that long is
    past any cap anyway."""
    stripped = digits.lstrip("0")
    if len(stripped) > len(str(cap)):
        return cap
    return min(int(stripped or "0"), cap)


def datetime_in_range(when: datetime) -> bool:
    """Whether `when` (naive: UTC, as the stores take it) is within the datetime rule.
    Comparing aware datetimes never overflows, whatever their offsets."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return MIN_DATETIME <= aware < MAX_DATETIME


def as_utc(when: datetime) -> datetime:
    """`when` as an aware UTC datetime (naive: taken as UTC). Call it on values within the
    datetime rule only: near the ends of the range the conversion overflows."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def in_utc(value: T) -> T:
    """`value` (a validated model, its fields, nested models and lists of them, as
    `datetime_problems` walks them) with every datetime `as_utc`; unchanged parts are the
    same objects. Only for values without `datetime_problems`."""
    if isinstance(value, datetime):
        return as_utc(value)  # type: ignore[return-value]
    if isinstance(value, BaseModel):
        update = {
            name: new
            for name in type(value).model_fields
            if (new := in_utc(old := getattr(value, name))) is not old
        }
        return value.model_copy(update=update) if update else value
    if isinstance(value, list):
        items = [in_utc(item) for item in value]
        changed = any(new is not old for new, old in zip(items, value, strict=True))
        return items if changed else value  # type: ignore[return-value]
    return value


def datetime_problems(value: Any, loc: Sequence[Any]) -> list[dict[str, Any]]:
    """Every datetime outside the rule in a validated model (its fields, nested models
    and lists of them), each at its loc."""
    problems: list[dict[str, Any]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, tuple(loc))]
    while stack:
        item, where = stack.pop()
        if isinstance(item, datetime):
            if not datetime_in_range(item):
                problems.append({"loc": list(where), "msg": DATETIME_RULE})
        elif isinstance(item, BaseModel):
            stack.extend((getattr(item, name), (*where, name)) for name in type(item).model_fields)
        elif isinstance(item, list | tuple):
            stack.extend((child, (*where, i)) for i, child in enumerate(item))
    problems.sort(key=lambda p: [str(x) for x in p["loc"]])
    return problems


def text_problem(value: str) -> str | None:
    """Why `value` cannot be accepted, or None."""
    found = UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "NUL characters (\\u0000) are not allowed"
    return "lone UTF-16 surrogates are not allowed (send valid Unicode)"


class JsonTooDeepError(ValueError):
    pass


def json_problems(
    value: Any, *, loc: tuple[Any, ...] = (), max_problems: int = 20
) -> list[dict[str, Any]]:
    """Text and integer-range problems anywhere in a parsed JSON value (iterative, so depth
    costs no recursion). Raises `JsonTooDeepError` past `MAX_JSON_DEPTH` containers."""
    problems: list[dict[str, Any]] = []
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, loc, 0)]
    while stack and len(problems) < max_problems:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            msg = text_problem(item)
            if msg:
                problems.append({"loc": list(where), "msg": msg})
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_JSON_INT:
                problems.append(
                    {"loc": list(where), "msg": f"integers must be within +/-{MAX_JSON_INT}"}
                )
        elif isinstance(item, dict):
            if depth >= MAX_JSON_DEPTH:
                raise JsonTooDeepError(list(where))
            for key, child in item.items():
                msg = text_problem(key)
                if msg:
                    problems.append({"loc": [*where, key], "msg": f"key: {msg}"})
                stack.append((child, (*where, key), depth + 1))
        elif isinstance(item, list):
            if depth >= MAX_JSON_DEPTH:
                raise JsonTooDeepError(list(where))
            stack.extend((child, (*where, i), depth + 1) for i, child in enumerate(item))
    return problems


def json_depth(value: Any) -> int:
    """Nesting depth of containers (a scalar is 0, `{}` is 1)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
    return deepest


@dataclass(frozen=True)
class MapLimits:
    """Caps of a free-form JSON object such as `metadata`."""

    name: str
    max_keys: int
    max_key_chars: int
    max_bytes: int
    max_depth: int

    def problem(self, value: Mapping[str, Any]) -> str | None:
        if len(value) > self.max_keys:
            return f"{self.name} has {len(value)} keys; at most {self.max_keys} are allowed"
        for key in value:
            if not key or len(key) > self.max_key_chars:
                return f"{self.name} keys must be 1-{self.max_key_chars} characters"
        depth = json_depth(dict(value))
        if depth > self.max_depth:
            return f"{self.name} nests {depth} levels deep; at most {self.max_depth} are allowed"
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self.max_bytes:
            return f"{self.name} is {size} bytes as JSON; at most {self.max_bytes} are allowed"
        return None

    def check(self, value: dict[str, Any]) -> dict[str, Any]:
        """A pydantic after-validator."""
        msg = self.problem(value)
        if msg:
            raise ValueError(msg)
        return value


METADATA_LIMITS = MapLimits(
    "metadata", max_keys=64, max_key_chars=128, max_bytes=16 * 1024, max_depth=8
)
VARIABLES_LIMITS = MapLimits(
    "variables", max_keys=100, max_key_chars=128, max_bytes=64 * 1024, max_depth=8
)

Metadata = Annotated[dict[str, Any], AfterValidator(METADATA_LIMITS.check)]
Variables = Annotated[dict[str, Any], AfterValidator(VARIABLES_LIMITS.check)]
