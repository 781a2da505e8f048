"""Compact JSON of plain data (what `model_dump(mode="json")` returns: dicts, lists,
strings, numbers, booleans, None), written by pydantic-core's serializer instead of the
standard library's encoder, for the JSON every turn writes: its run events (Redis,
PostgreSQL) and its response body.

For a message-sized dict `json.dumps` takes ~6 us and this ~1.2 us (timeit); a Redis turn
encodes five events and its response. The text differs from `json.dumps(..., separators=
(",", ":"))` only in ways no JSON reader sees: non-ASCII characters are written as UTF-8
instead of `\\uXXXX` escapes, and floats in their shortest round-trip form (`0.000015`,
not `1.5e-05`)."""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic_core import to_json


def json_bytes(data: Any) -> bytes:
    """`data` as compact JSON, UTF-8."""
    return to_json(data)


def json_str(data: Any) -> str:
    return to_json(data).decode()


def refuse_constant(name: str) -> Any:
    """`json.loads(parse_constant=...)`: NaN, Infinity and -Infinity are no JSON."""
    raise ValueError(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    """`json.loads(parse_float=...)`: a number past float's range (1e999) is no value."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def loads_strict(text: str | bytes) -> Any:
    """`json.loads` of standard JSON only (ValueError otherwise). The standard library
    takes NaN and Infinity, which then reach a message or an event: PostgreSQL's jsonb
    refuses them (the run's events were lost), the other stores wrote them as null and the
    memory store kept them. Used on what providers and tools send."""
    return json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
