"""Checking a variable value against its declaration, and turning values into text.

PromptKit declares `type` and `validation` but does not enforce them; Parley does, both for
client-supplied values (at render time) and for declared defaults (at load time).
Validation keywords follow their JSON Schema namesakes: `pattern` is an unanchored search,
`min_length`/`max_length` apply to strings, `minimum`/`maximum` to numbers, and `enum`
compares JSON values (so `true` never equals `1`, but `1` equals `1.0`).
"""

from __future__ import annotations

import json
import math
from typing import Any

from app.domain.patterns import PatternError, author_pattern
from app.packs.models import Variable, VariableType


def type_matches(kind: VariableType, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    return isinstance(value, list)


def value_problems(variable: Variable, value: Any) -> list[str]:
    """Every way `value` violates `variable`'s type and validation rules (empty if valid)."""
    if not type_matches(variable.type, value):
        return [f"must be of type {variable.type}, got {json_type(value)}"]
    rules = variable.validation
    if rules is None:
        return []
    problems: list[str] = []
    if isinstance(value, str):
        if rules.pattern is not None:
            try:
                if author_pattern(rules.pattern).search(value) is None:
                    problems.append(f"must match pattern {rules.pattern!r}")
            except PatternError as exc:  # rejected at load time; defensive
                problems.append(f"validation pattern is not a valid regular expression: {exc}")
        if rules.min_length is not None and len(value) < rules.min_length:
            problems.append(f"must be at least {rules.min_length} characters long")
        if rules.max_length is not None and len(value) > rules.max_length:
            problems.append(f"must be at most {rules.max_length} characters long")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if rules.minimum is not None and value < rules.minimum:
            problems.append(f"must be >= {_number(rules.minimum)}")
        if rules.maximum is not None and value > rules.maximum:
            problems.append(f"must be <= {_number(rules.maximum)}")
    if rules.enum is not None and not any(json_equal(value, item) for item in rules.enum):
        allowed = ", ".join(json.dumps(item, ensure_ascii=False) for item in rules.enum)
        problems.append(f"must be one of: {allowed}")
    return problems


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return f"non-JSON {type(value).__name__}"


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values as JSON Schema defines it (`enum`, `const`)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def format_value(value: Any) -> str:
    """How a value appears in a rendered prompt: strings as-is, everything else as compact
    JSON (`true`, `3.5`, `{"a":1}`)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
