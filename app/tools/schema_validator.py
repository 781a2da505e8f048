"""The JSON Schema validator of tool arguments and results (Draft 7), with the schema's
`pattern` and `patternProperties` matched by RE2 (`app.domain.patterns`).

The schemas come from packs and RuntimeConfigs, the values from the model (steerable by
any end user) and from clients (tool results): with jsonschema's own keywords Python's
backtracking `re` would match them, and one crafted value could hold the event loop. The
three keywords whose checks search a pattern (`pattern`, `patternProperties`, and
`additionalProperties`, which must tell which keys a pattern covers) are replaced; every
other keyword is jsonschema's. A pattern RE2 cannot compile fails the value with a message
saying so rather than being ignored.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft7Validator, validators
from jsonschema.exceptions import ValidationError

from app.domain.patterns import PatternError, author_pattern, pattern_error_text


def _unusable(pattern: str, exc: Exception) -> ValidationError:
    return ValidationError(
        f"the schema's pattern {pattern!r} is not RE2 syntax: {pattern_error_text(exc)}"
    )


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        found = author_pattern(pattern).search(instance)
    except PatternError as exc:
        yield _unusable(pattern, exc)
        return
    if found is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _covered(patterns: Mapping[str, Any], key: str) -> Iterator[str]:
    """The patterns of `patterns` that `key` matches (an unusable one matches nothing:
    `_pattern_properties` reports it)."""
    for pattern in patterns:
        try:
            if author_pattern(pattern).search(key) is not None:
                yield pattern
        except PatternError:
            continue


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        try:
            compiled = author_pattern(pattern)
        except PatternError as exc:
            yield _unusable(pattern, exc)
            continue
        for key, value in instance.items():
            if compiled.search(key) is not None:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    declared = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = [k for k in instance if k not in declared and not any(_covered(patterns, k))]
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif additional is False and extras:
        names = ", ".join(repr(k) for k in sorted(extras))
        if patterns:  # jsonschema's wording, so messages do not change
            verb = "does" if len(extras) == 1 else "do"
            regexes = ", ".join(repr(p) for p in sorted(patterns))
            yield ValidationError(f"{names} {verb} not match any of the regexes: {regexes}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(
                f"Additional properties are not allowed ({names} {verb} unexpected)"
            )


ToolSchemaValidator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft7Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    },
)
