"""parse_pack and the official JSON Schema (draft 2020-12, v1.5.0) agree.

1. Every real fixture pack is accepted by both.
2. Targeted mutations of real packs: rejected by both (with our error at the right `loc`),
   or accepted by both. (Random mutations: `test_schema_agreement_fuzz.py`.)
3. The known, deliberate differences are spelled out as tests of their own:
   - semantic checks reject packs the schema accepts (unknown tool, undefined fragment, ...);
   - a composition's step graph is modelled loosely, so we accept bad steps;
   - patterns are applied with ECMA-262 meaning (the dialect JSON Schema specifies), where
     the Python `jsonschema` library's `re.search` lets `$` match before a trailing newline
     and `\\d` match non-ASCII digits.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from app.errors import InvalidPack
from app.packs import parse_pack
from app.packs.validation import schema_errors
from tests.unit.packs.helpers import (
    DELETE,
    example_files,
    fixture,
    fixture_files,
    load_json,
    mutate,
    require_fixtures,
    schema,
)

TOOLS = "sdk__examples__tools__tools"
VARS = "sdk__examples__variables__assistant"
REALTIME = "sdk__examples__openai-realtime__openai-realtime"
EVALS = "sdk__testdata__packs__eval-test"
WORKFLOW = "sdk__examples__hitl__hitl-workflow"
VALIDATOR = "sdk__testdata__packs__guardrail-valid-validator"
COMPILED = "sdk__examples__a2a-agent__a2a-agent"

Path_ = tuple[str | int, ...]


@cache
def validator() -> Draft202012Validator:
    document = schema()
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document)


def schema_accepts(document: Any) -> bool:
    return bool(validator().is_valid(document))


def our_errors(document: Any) -> list[dict[str, Any]] | None:
    """None if parse_pack accepts `document`, else its error list."""
    try:
        parse_pack(document)
    except InvalidPack as exc:
        return exc.errors or []
    return None


# --- 1. the real corpus ------------------------------------------------------------------


def test_schema_is_the_expected_version() -> None:
    require_fixtures()
    assert schema()["version"] == "1.5.0"
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_fixture_accepted_by_both(path: Path) -> None:
    document = load_json(path)
    assert schema_accepts(document), [e.message for e in validator().iter_errors(document)]
    assert our_errors(document) is None


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_shipped_example_packs_accepted_by_both(path: Path) -> None:
    document = load_json(path)
    assert schema_accepts(document), [e.message for e in validator().iter_errors(document)]
    assert our_errors(document) is None


# --- 2. targeted mutations ---------------------------------------------------------------

TOOL_POLICY = ("prompts", "assistant", "tool_policy")
VAR0 = ("prompts", "assistant", "variables", 0)
RT_PARAMS = ("prompts", "assistant", "parameters")
WEATHER = ("tools", "get_weather")
MEDIA = ("prompts", "assistant", "media")

# (id, base fixture, path, value, loc prefix our error must have; None = the path itself)
REJECTED: list[tuple[str, str, Path_, Any, Path_ | None]] = [
    ("unknown top-level key", TOOLS, ("x_custom",), 1, None),
    ("unknown prompt key", TOOLS, ("prompts", "assistant", "temperature"), 0.5, None),
    ("pack id uppercase", TOOLS, ("id",), "Tools", None),
    ("pack id starts with digit", TOOLS, ("id",), "1tools", None),
    ("pack id with underscore", TOOLS, ("id",), "my_tools", None),
    ("pack id too long", TOOLS, ("id",), "a" * 101, None),
    ("pack id not a string", TOOLS, ("id",), 7, None),
    ("empty pack name", TOOLS, ("name",), "", None),
    ("pack name too long", TOOLS, ("name",), "n" * 201, None),
    ("bad version", TOOLS, ("version",), "1.0", None),
    ("version with leading zero", TOOLS, ("version",), "01.0.0", None),
    ("description null", TOOLS, ("description",), None, None),
    ("description too long", TOOLS, ("description",), "d" * 5001, None),
    ("$schema not a string", TOOLS, ("$schema",), 1, None),
    ("missing template_engine", TOOLS, ("template_engine",), DELETE, None),
    ("template_engine without syntax", TOOLS, ("template_engine", "syntax"), DELETE, None),
    ("template_engine extra key", TOOLS, ("template_engine", "strict"), True, None),
    ("feature not in enum", TOOLS, ("template_engine", "features"), ["macros"], None),
    ("missing prompts", TOOLS, ("prompts",), DELETE, None),
    ("empty prompts", TOOLS, ("prompts",), {}, None),
    ("prompt not an object", TOOLS, ("prompts", "assistant"), "hi", None),
    (
        "prompt without system_template",
        TOOLS,
        ("prompts", "assistant", "system_template"),
        DELETE,
        None,
    ),
    ("empty system_template", TOOLS, ("prompts", "assistant", "system_template"), "", None),
    ("prompt id uppercase", TOOLS, ("prompts", "assistant", "id"), "Assistant", None),
    ("prompt version not semver", TOOLS, ("prompts", "assistant", "version"), "one", None),
    ("empty prompt name", TOOLS, ("prompts", "assistant", "name"), "", None),
    ("prompt tools not a list", TOOLS, ("prompts", "assistant", "tools"), "get_weather", None),
    ("variable type not in enum", VARS, (*VAR0, "type"), "text", None),
    ("variable extra key", VARS, (*VAR0, "label"), "x", None),
    ("variable without required", VARS, (*VAR0, "required"), DELETE, None),
    ("variable required as string", VARS, (*VAR0, "required"), "false", None),
    ("variable name with dash", VARS, (*VAR0, "name"), "user-id", None),
    (
        "validation min_length -1",
        VARS,
        (*VAR0, "validation"),
        {"min_length": -1},
        (*VAR0, "validation", "min_length"),
    ),
    (
        "validation max_length 0",
        VARS,
        (*VAR0, "validation"),
        {"max_length": 0},
        (*VAR0, "validation", "max_length"),
    ),
    (
        "validation unknown key",
        VARS,
        (*VAR0, "validation"),
        {"min": 1},
        (*VAR0, "validation", "min"),
    ),
    (
        "validation enum not a list",
        VARS,
        (*VAR0, "validation"),
        {"enum": "a"},
        (*VAR0, "validation", "enum"),
    ),
    ("temperature 3", REALTIME, (*RT_PARAMS, "temperature"), 3, None),
    ("temperature as string", REALTIME, (*RT_PARAMS, "temperature"), "0.5", None),
    ("temperature true", REALTIME, (*RT_PARAMS, "temperature"), True, None),
    ("top_p -1", REALTIME, (*RT_PARAMS, "top_p"), -1, None),
    ("max_tokens 0", REALTIME, (*RT_PARAMS, "max_tokens"), 0, None),
    ("max_tokens 1.5", REALTIME, (*RT_PARAMS, "max_tokens"), 1.5, None),
    ("top_k 0", REALTIME, (*RT_PARAMS, "top_k"), 0, None),
    ("frequency_penalty 2.5", REALTIME, (*RT_PARAMS, "frequency_penalty"), 2.5, None),
    ("presence_penalty -3", REALTIME, (*RT_PARAMS, "presence_penalty"), -3, None),
    ("parameters unknown key", REALTIME, (*RT_PARAMS, "seed"), 1, None),
    ("tool name with a dash", TOOLS, (*WEATHER, "name"), "get-weather", None),
    ("tool without description", TOOLS, (*WEATHER, "description"), DELETE, None),
    ("tool with empty description", TOOLS, (*WEATHER, "description"), "", None),
    ("tool extra key", TOOLS, (*WEATHER, "strict"), True, None),
    ("tool parameters without type", TOOLS, (*WEATHER, "parameters", "type"), DELETE, None),
    ("tool parameters type array", TOOLS, (*WEATHER, "parameters", "type"), "array", None),
    (
        "tool parameters without properties",
        TOOLS,
        (*WEATHER, "parameters", "properties"),
        DELETE,
        None,
    ),
    (
        "tool property not an object",
        TOOLS,
        (*WEATHER, "parameters", "properties", "city"),
        "string",
        None,
    ),
    ("tool required not strings", TOOLS, (*WEATHER, "parameters", "required"), [1], None),
    (
        "tool_policy.max_rounds 0",
        TOOLS,
        TOOL_POLICY,
        {"max_rounds": 0},
        (*TOOL_POLICY, "max_rounds"),
    ),
    (
        "tool_policy.max_tool_calls_per_turn 0",
        TOOLS,
        TOOL_POLICY,
        {"max_tool_calls_per_turn": 0},
        (*TOOL_POLICY, "max_tool_calls_per_turn"),
    ),
    (
        "bad tool_choice",
        TOOLS,
        TOOL_POLICY,
        {"tool_choice": "always"},
        (*TOOL_POLICY, "tool_choice"),
    ),
    ("tool_policy extra key", TOOLS, TOOL_POLICY, {"allowlist": []}, (*TOOL_POLICY, "allowlist")),
    ("tool_policy null", TOOLS, TOOL_POLICY, None, None),
    ("fragment not a string", TOOLS, ("fragments",), {"a": 1}, ("fragments", "a")),
    (
        "model override unknown key",
        TOOLS,
        ("prompts", "assistant", "model_overrides"),
        {"gpt-4o": {"suffix": "x"}},
        ("prompts", "assistant", "model_overrides", "gpt-4o", "suffix"),
    ),
    (
        "model override temperature 9",
        TOOLS,
        ("prompts", "assistant", "model_overrides"),
        {"gpt-4o": {"parameters": {"temperature": 9}}},
        ("prompts", "assistant", "model_overrides", "gpt-4o", "parameters", "temperature"),
    ),
    ("eval trigger not in enum", EVALS, ("evals", 0, "trigger"), "sometimes", None),
    ("eval without id", EVALS, ("evals", 0, "id"), DELETE, None),
    (
        "validator without enabled",
        VALIDATOR,
        ("prompts", "chat", "validators", 0, "enabled"),
        DELETE,
        None,
    ),
    ("validator extra key", VALIDATOR, ("prompts", "chat", "validators", 0, "level"), 1, None),
    (
        "workflow state without on_event",
        WORKFLOW,
        ("workflow", "states", "triage", "on_event"),
        DELETE,
        None,
    ),
    (
        "workflow state without prompt_task",
        WORKFLOW,
        ("workflow", "states", "confirmation", "prompt_task"),
        DELETE,
        None,
    ),
    ("workflow version 0", WORKFLOW, ("workflow", "version"), 0, None),
    ("compilation without schema", COMPILED, ("compilation", "schema"), DELETE, None),
    ("metadata language eng", TOOLS, ("metadata",), {"language": "eng"}, ("metadata", "language")),
    ("media without enabled", TOOLS, MEDIA, {"supported_types": ["image"]}, (*MEDIA, "enabled")),
    (
        "media image format tiff",
        TOOLS,
        MEDIA,
        {"enabled": True, "image": {"allowed_formats": ["tiff"]}},
        (*MEDIA, "image", "allowed_formats", 0),
    ),
    (
        "media custom type ambiguous",
        TOOLS,
        MEDIA,
        {"enabled": True, "model3d": {"max_size_mb": 5}},
        (*MEDIA, "model3d"),
    ),
    ("skill with path and name", TOOLS, ("skills",), [{"path": "x", "name": "y"}], ("skills", 0)),
    (
        "agents without members",
        TOOLS,
        ("agents",),
        {"entry": "assistant", "members": {}},
        ("agents", "members"),
    ),
    (
        "composition version 2",
        TOOLS,
        ("compositions",),
        {"c": {"version": 2, "steps": [{}]}},
        ("compositions", "c", "version"),
    ),
    (
        "composition without steps",
        TOOLS,
        ("compositions",),
        {"c": {"version": 1, "steps": []}},
        ("compositions", "c", "steps"),
    ),
    (
        "tested model success_rate 2",
        TOOLS,
        ("prompts", "assistant", "tested_models"),
        [{"provider": "p", "model": "m", "date": "2025-01-01", "success_rate": 2}],
        ("prompts", "assistant", "tested_models", 0, "success_rate"),
    ),
]

ACCEPTED: list[tuple[str, str, Path_, Any]] = [
    ("full semver", TOOLS, ("version",), "v2.0.0-beta.1+build.123"),
    ("integral float as integer", REALTIME, (*RT_PARAMS, "max_tokens"), 2.0),
    ("top_k null", REALTIME, (*RT_PARAMS, "top_k"), None),
    ("temperature bounds", REALTIME, RT_PARAMS, {"temperature": 2, "top_p": 0, "top_k": 1}),
    ("penalty bounds", REALTIME, RT_PARAMS, {"frequency_penalty": -2, "presence_penalty": 2}),
    ("metadata extra keys", TOOLS, ("metadata",), {"owner": {"team": "x"}, "tags": ["a"]}),
    (
        "tool parameters extra keywords",
        TOOLS,
        (*WEATHER, "parameters", "additionalProperties"),
        False,
    ),
    ("tool without parameters", TOOLS, (*WEATHER, "parameters"), DELETE),
    (
        "full tool policy",
        TOOLS,
        TOOL_POLICY,
        {
            "tool_choice": "required",
            "max_rounds": 1,
            "max_tool_calls_per_turn": 1,
            "blocklist": ["get_time"],
        },
    ),
    (
        "model overrides",
        TOOLS,
        ("prompts", "assistant", "model_overrides"),
        {
            "m": {
                "system_template_prefix": "a",
                "system_template_suffix": "b",
                "system_template": "c",
                "parameters": {"top_k": None, "max_tokens": 5},
            }
        },
    ),
    (
        "variable with every rule",
        VARS,
        (*VAR0, "validation"),
        {
            "pattern": "^u",
            "min_length": 0,
            "max_length": 9,
            "minimum": -1.5,
            "maximum": 3,
            "enum": ["unknown", 1, None],
        },
    ),
    ("fragments with include", TOOLS, ("fragments",), {"a": "A", "b": "{{fragment:a}}"}),
    (
        "media with custom type",
        TOOLS,
        MEDIA,
        {
            "enabled": True,
            "supported_types": ["model3d"],
            "image": {"max_size_mb": 1, "default_detail": "low"},
            "model3d": {"validation_params": {}},
            "examples": [{"name": "e", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
        },
    ),
    (
        "skills of every kind",
        TOOLS,
        ("skills",),
        [
            "./skills",
            {"path": "p", "preload": True},
            {"name": "n", "description": "d", "instructions": "i"},
        ],
    ),
    (
        "agents",
        TOOLS,
        ("agents",),
        {
            "entry": "assistant",
            "members": {"assistant": {"tags": ["t"], "input_modes": ["text/plain"]}},
        },
    ),
    (
        "composition",
        TOOLS,
        ("compositions",),
        {"c": {"version": 1, "steps": [{"id": "s", "kind": "tool", "tool": "get_time"}]}},
    ),
    (
        "evals with metric",
        EVALS,
        ("evals", 0, "metric"),
        {
            "name": "pp:score",
            "type": "gauge",
            "range": {"min": 0, "max": 1},
            "help": "extra allowed",
        },
    ),
    ("terminal workflow state", WORKFLOW, ("workflow", "states", "confirmation", "terminal"), True),
    (
        "pipeline",
        TOOLS,
        ("prompts", "assistant", "pipeline"),
        {"stages": ["template"], "middleware": [{"type": "t", "config": {"a": 1}}]},
    ),
]


@pytest.mark.parametrize(
    ("base", "path", "value", "loc"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED]
)
def test_mutation_rejected_by_both(base: str, path: Path_, value: Any, loc: Path_ | None) -> None:
    document = mutate(fixture(base), path, value)
    assert not schema_accepts(document)
    errors = our_errors(document)
    assert errors is not None, "parse_pack accepted what the schema rejects"
    expected = list(loc if loc is not None else path)
    assert any(e["loc"][: len(expected)] == expected for e in errors), errors


@pytest.mark.parametrize(
    ("base", "path", "value"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_mutation_accepted_by_both(base: str, path: Path_, value: Any) -> None:
    document = mutate(fixture(base), path, value)
    assert schema_accepts(document), [e.message for e in validator().iter_errors(document)]
    assert our_errors(document) is None


def test_tables_are_big_enough() -> None:
    assert len(REJECTED) >= 20 and len(ACCEPTED) >= 5


# --- 3. deliberate differences -----------------------------------------------------------

SEMANTIC: list[tuple[str, str, Path_, Any, Path_]] = [
    (
        "prompt tool not in pack",
        TOOLS,
        ("prompts", "assistant", "tools"),
        ["get_weather", "nope"],
        ("prompts", "assistant", "tools", 1),
    ),
    ("tool key differs from name", TOOLS, (*WEATHER, "name"), "get_forecast", (*WEATHER, "name")),
    (
        "undefined fragment",
        TOOLS,
        ("prompts", "assistant", "system_template"),
        "Hi {{fragment:x}}",
        ("prompts", "assistant", "system_template"),
    ),
    (
        "unsupported syntax",
        TOOLS,
        ("template_engine", "syntax"),
        "${variable}",
        ("template_engine", "syntax"),
    ),
    ("default of wrong type", VARS, (*VAR0, "default"), 5, (*VAR0, "default")),
    ("default outside enum", VARS, (*VAR0, "validation"), {"enum": ["a"]}, (*VAR0, "default")),
    (
        "invalid regex",
        VARS,
        (*VAR0, "validation"),
        {"pattern": "("},
        (*VAR0, "validation", "pattern"),
    ),
    (
        "duplicate variable",
        VARS,
        (*VAR0, "name"),
        "current_date",
        ("prompts", "assistant", "variables", 1, "name"),
    ),  # the later one is the duplicate
]


@pytest.mark.parametrize(
    ("base", "path", "value", "loc"), [c[1:] for c in SEMANTIC], ids=[c[0] for c in SEMANTIC]
)
def test_semantic_checks_reject_what_the_schema_allows(
    base: str, path: Path_, value: Any, loc: Path_
) -> None:
    document = mutate(fixture(base), path, value)
    assert schema_accepts(document)
    assert schema_errors(document) == []  # our schema-level verdict agrees...
    errors = our_errors(document)  # ...and the semantic layer rejects it
    assert errors is not None and [e["loc"] for e in errors] == [list(loc)]


@pytest.mark.parametrize(
    "step",
    [
        {"id": "s", "kind": "tool"},  # ToolStep requires `tool`
        {"id": "s-1", "kind": "tool", "tool": "t"},  # step id pattern
        {"id": "s", "kind": "teleport"},  # no oneOf branch matches
    ],
)
def test_known_gap_composition_steps_are_loose(step: dict[str, Any]) -> None:
    document = mutate(fixture(TOOLS), ("compositions",), {"c": {"version": 1, "steps": [step]}})
    assert not schema_accepts(document)
    assert our_errors(document) is None  # documented in app/packs/sections.py


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("id",), "tools\n"),
        (("version",), "1.0.0\n"),
        (("version",), "1.1\u0663.0"),  # ARABIC-INDIC DIGIT THREE
        (("metadata",), {"language": "en\n"}),
    ],
)
def test_patterns_use_ecma_semantics(path: Path_, value: Any) -> None:
    document = mutate(fixture(TOOLS), path, value)
    # Python's `re.search` (used by the jsonschema library) accepts these; ECMA-262, the
    # regex dialect JSON Schema specifies, does not. We follow the specification.
    assert schema_accepts(document)
    assert our_errors(document) is not None
