"""`ToolSchemaValidator`: Draft 7 with `pattern`, `patternProperties` and
`additionalProperties` matched by RE2, so a model's arguments or a client's tool result
cannot make a pack's pattern backtrack for minutes on the event loop (the class of outside
tester T15); every other keyword, and these three's meaning, unchanged."""

from __future__ import annotations

import time
from typing import Any

import pytest
from jsonschema import Draft7Validator

from app.tools.schema_validator import ToolSchemaValidator
from app.tools.toolset import schema_errors

HOSTILE = "a" * 10_000 + "!"


@pytest.mark.parametrize(
    "schema, value",
    [
        ({"type": "string", "pattern": "(a+)+$"}, HOSTILE),
        ({"type": "object", "patternProperties": {"(a+)+$": {"type": "number"}}}, {HOSTILE: 1}),
        (
            {
                "type": "object",
                "patternProperties": {"(a|aa)+$": {}},
                "additionalProperties": False,
            },
            {HOSTILE: 1},
        ),
    ],
)
def test_catastrophic_patterns_are_matched_in_linear_time(schema: Any, value: Any) -> None:
    t = time.perf_counter()
    errors = schema_errors(ToolSchemaValidator(schema), value)
    assert time.perf_counter() - t < 0.5
    assert errors == [] or errors[0]


SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-\\d+$"}},
    "patternProperties": {"^x-": {"type": "integer"}},
    "additionalProperties": False,
    "required": ["code"],
}


@pytest.mark.parametrize(
    "value",
    [
        {"code": "AB-12"},
        {"code": "AB-12", "x-a": 1},
        {"code": "ab-12"},
        {"code": "AB-12", "x-a": "one"},
        {"code": "AB-12", "other": 1},
        {"code": "AB-12", "other": 1, "more": 2},
        {},
        {"code": 5},
    ],
)
def test_same_verdicts_as_jsonschema_on_ordinary_patterns(value: Any) -> None:
    ours = sorted(e.message for e in ToolSchemaValidator(SCHEMA).iter_errors(value))
    theirs = sorted(e.message for e in Draft7Validator(SCHEMA).iter_errors(value))
    assert ours == theirs


def test_additional_properties_schema_applies_to_uncovered_keys() -> None:
    schema = {
        "patternProperties": {"^n_": {"type": "number"}},
        "additionalProperties": {"type": "string"},
    }
    v = ToolSchemaValidator(schema)
    assert not list(v.iter_errors({"n_a": 1, "b": "s"}))
    assert [e.message for e in v.iter_errors({"b": 2})] == ["2 is not of type 'string'"]


def test_a_pattern_re2_cannot_run_fails_the_value_saying_so() -> None:
    errors = schema_errors(ToolSchemaValidator({"type": "string", "pattern": "(a)\\1"}), "aa")
    assert len(errors) == 1 and "not RE2 syntax" in errors[0]
