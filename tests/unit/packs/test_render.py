"""render_system_prompt: precedence, enforcement, error paths, formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import InvalidVariables, PromptNotFound, UnresolvedPlaceholder
from app.packs import (
    RenderedPrompt,
    builtin_variables,
    effective_parameters,
    effective_template,
    parse_pack,
    render_system_prompt,
)
from app.packs.models import PromptPack
from tests.unit.packs.helpers import fixture, minimal_pack

# Sunday 17 November 2024, 21:05 at UTC-5 (already Monday in UTC).
NOW = datetime(2024, 11, 17, 21, 5, tzinfo=timezone(timedelta(hours=-5)))


def pack_with(template: str, variables: list[dict[str, Any]] | None = None) -> PromptPack:
    return parse_pack(minimal_pack(system_template=template, variables=variables or []))


def render(pack: PromptPack, variables: dict[str, Any], prompt: str = "chat") -> RenderedPrompt:
    return render_system_prompt(pack, prompt, variables, now=NOW)


def invalid(pack: PromptPack, variables: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(InvalidVariables) as info:
        render(pack, variables)
    assert info.value.status == 422 and info.value.code == "invalid_variables"
    return info.value.errors or []


def var(name: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "required": extra.pop("required", False), **extra}


# --- built-ins ---------------------------------------------------------------------------


def test_builtins_use_now_in_its_own_timezone() -> None:
    assert builtin_variables(NOW) == {
        "current_date": "2024-11-17",
        "current_time": "21:05",
        "current_year": "2024",
        "current_month": "November",
        "current_weekday": "Sunday",
        "current_hour": "21",
    }
    early = builtin_variables(datetime(2025, 1, 6, 7, 3, tzinfo=UTC))
    assert (early["current_hour"], early["current_time"]) == ("7", "07:03")
    assert (early["current_weekday"], early["current_month"]) == ("Monday", "January")


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        builtin_variables(datetime(2024, 1, 1))


def test_builtins_beat_declared_default_unknown() -> None:
    pack = parse_pack(fixture("sdk__examples__variables__assistant"))
    rendered = render(pack, {"user_id": "u-42"}, prompt="assistant")
    assert "- Current time: 21:05\n" in rendered.text
    assert "- Today's date: 2024-11-17 (Sunday)\n" in rendered.text
    assert "- Current hour: 21:00\n" in rendered.text
    assert "- Month: November 2024\n" in rendered.text
    assert "unknown" not in rendered.text
    assert "- User ID: u-42\n" in rendered.text
    # builtins are excluded; client values and applied defaults are included
    assert rendered.variables == {
        "user_id": "u-42",
        "user_language": "English",
        "response_style": "professional",
        "user_expertise": "intermediate",
    }


def test_client_value_beats_builtin() -> None:
    pack = pack_with("Date: {{current_date}}, year {{current_year}}")
    rendered = render(pack, {"current_date": "someday"})
    assert rendered.text == "Date: someday, year 2024"
    assert rendered.variables == {"current_date": "someday"}


def test_builtin_name_accepted_even_if_unused() -> None:
    assert render(pack_with("Hi"), {"current_year": "1999"}).variables == {"current_year": "1999"}


# --- errors ------------------------------------------------------------------------------


def test_unknown_prompt() -> None:
    pack = parse_pack(fixture("sdk__examples__openai-realtime__openai-realtime"))
    with pytest.raises(PromptNotFound) as info:
        render(pack, {}, prompt="transaltor")
    assert info.value.status == 422 and info.value.code == "prompt_not_found"
    assert info.value.detail == (
        "pack 'openai-realtime-example' 1.0.0 has no prompt 'transaltor'; "
        "available: assistant, translator"
    )
    assert info.value.errors == [{"loc": ["prompt_name"], "msg": info.value.detail}]


def test_missing_required_variable() -> None:
    pack = parse_pack(fixture("sdk__examples__hello__hello"))
    errors = invalid(pack, {})
    assert errors == [{"loc": ["variables", "user_name"], "msg": "required variable is missing"}]
    assert invalid(pack, {"user_name": None}) == errors  # null is not a value
    assert "Alice" in render(pack, {"user_name": "Alice"}, prompt="chat").text


def test_required_with_default_uses_the_default() -> None:
    pack = parse_pack(fixture("sdk__examples__openai-realtime__openai-realtime"))
    rendered = render_system_prompt(pack, "translator", {}, now=NOW)
    assert "translate it to Spanish." in rendered.text
    assert rendered.variables == {"target_language": "Spanish"}


def test_unknown_variable_is_rejected() -> None:
    pack = pack_with("Hello {{name}}", [var("name", default="you")])
    assert invalid(pack, {"nmae": "Bob"}) == [
        {
            "loc": ["variables", "nmae"],
            "msg": "unknown variable; prompt 'chat' accepts: name (plus built-ins)",
        }
    ]


@pytest.mark.parametrize(
    ("type_", "bad", "good"),
    [
        ("string", 5, "5"),
        ("number", "5", 5),
        ("number", True, 2.5),
        ("number", float("nan"), -1),
        ("boolean", 1, False),
        ("boolean", "true", True),
        ("object", [], {"a": 1}),
        ("array", {}, [1, 2]),
        ("array", "a,b", []),
    ],
)
def test_declared_type_is_enforced(type_: str, bad: Any, good: Any) -> None:
    pack = pack_with("v={{v}}", [var("v", type_)])
    errors = invalid(pack, {"v": bad})
    assert len(errors) == 1 and errors[0]["loc"] == ["variables", "v"]
    assert errors[0]["msg"].startswith(f"must be of type {type_}, got ")
    assert render(pack, {"v": good}).variables == {"v": good}


@pytest.mark.parametrize(
    ("validation", "bad", "good", "message"),
    [
        (
            {"pattern": "^[A-Z]{2}-[0-9]+$"},
            "ab-1",
            "AB-12",
            "must match pattern '^[A-Z]{2}-[0-9]+$'",
        ),
        ({"pattern": "[0-9]"}, "abc", "a1c", "must match pattern '[0-9]'"),  # search semantics
        ({"min_length": 3}, "ab", "abc", "must be at least 3 characters long"),
        ({"max_length": 3}, "abcd", "abc", "must be at most 3 characters long"),
        ({"enum": ["low", "high"]}, "mid", "low", 'must be one of: "low", "high"'),
    ],
)
def test_string_validation(validation: dict[str, Any], bad: str, good: str, message: str) -> None:
    pack = pack_with("{{v}}", [var("v", validation=validation)])
    assert invalid(pack, {"v": bad}) == [{"loc": ["variables", "v"], "msg": message}]
    assert render(pack, {"v": good}).text == good


def test_number_validation() -> None:
    pack = pack_with("{{n}}", [var("n", "number", validation={"minimum": 1, "maximum": 2.5})])
    assert invalid(pack, {"n": 0}) == [{"loc": ["variables", "n"], "msg": "must be >= 1"}]
    assert invalid(pack, {"n": 3}) == [{"loc": ["variables", "n"], "msg": "must be <= 2.5"}]
    assert render(pack, {"n": 2.5}).text == "2.5"
    enum_pack = pack_with("{{n}}", [var("n", "number", validation={"enum": [1, 2]})])
    assert render(enum_pack, {"n": 2.0}).text == "2.0"
    assert invalid(enum_pack, {"n": 3})[0]["msg"] == "must be one of: 1, 2"


def test_several_rule_violations_of_one_value_are_all_listed() -> None:
    rules = {"min_length": 5, "pattern": "^[a-z]+$"}
    pack = pack_with("{{v}}", [var("v", validation=rules)])
    assert invalid(pack, {"v": "AB"}) == [
        {"loc": ["variables", "v"], "msg": "must match pattern '^[a-z]+$'"},
        {"loc": ["variables", "v"], "msg": "must be at least 5 characters long"},
    ]


def test_all_variable_problems_in_one_error() -> None:
    pack = pack_with(
        "{{a}} {{b}} {{c}} {{input}}",
        [var("a", required=True), var("b", "number"), var("c", validation={"enum": ["x"]})],
    )
    with pytest.raises(InvalidVariables) as info:
        render(pack, {"b": "two", "c": "y", "typo": 1})
    assert info.value.errors == [
        {"loc": ["variables", "b"], "msg": "must be of type number, got string"},
        {"loc": ["variables", "c"], "msg": 'must be one of: "x"'},
        {
            "loc": ["variables", "typo"],
            "msg": "unknown variable; prompt 'chat' accepts: a, b, c, input (plus built-ins)",
        },
        {"loc": ["variables", "a"], "msg": "required variable is missing"},
        {
            "loc": ["variables", "input"],
            "msg": "template placeholder {{input}} has no value; supply it in variables",
        },
    ]
    assert info.value.detail.startswith("Invalid variables for prompt 'chat': b: must be of type")


def test_undeclared_placeholder() -> None:
    pack = parse_pack(fixture("sdk__examples__json-function__research"))
    given_vars = {"topic": "tides", "audience": "student"}
    with pytest.raises(UnresolvedPlaceholder) as info:
        render_system_prompt(pack, "plan", given_vars, now=NOW)
    assert info.value.status == 422 and info.value.code == "unresolved_placeholder"
    assert info.value.detail == "Prompt 'plan': no value for {{input}}"
    assert info.value.errors == [
        {
            "loc": ["variables", "input"],
            "msg": "template placeholder {{input}} has no value; supply it in variables",
        }
    ]
    rendered = render_system_prompt(
        pack, "plan", {**given_vars, "input": {"topic": "tides", "n": 2}}, now=NOW
    )
    assert rendered.text.endswith('The full request payload was: {"topic":"tides","n":2}.')
    assert rendered.variables == {**given_vars, "input": {"topic": "tides", "n": 2}}


def test_undeclared_placeholder_needs_a_json_value() -> None:
    errors = invalid(pack_with("{{x}}"), {"x": object()})
    assert errors == [
        {"loc": ["variables", "x"], "msg": "must be a JSON value, got non-JSON object"}
    ]


# --- rendering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (3.5, "3.5"),
        ({"a": 1, "b": [True, None]}, '{"a":1,"b":[true,null]}'),
        (["x", "é"], '["x","é"]'),
        ("", ""),
    ],
)
def test_value_formatting(value: Any, text: str) -> None:
    assert render(pack_with("[{{x}}]"), {"x": value}).text == f"[{text}]"


def test_placeholder_whitespace_and_non_placeholders() -> None:
    template = "{{ name }}|{{name}}|{{  name\t}}|{{#if x}}|{{ a.b }}|{{}}|{ {name} }"
    pack = pack_with(template, [var("name", default="N")])
    assert render(pack, {}).text == "N|N|N|{{#if x}}|{{ a.b }}|{{}}|{ {name} }"


def test_optional_variable_without_value_renders_empty() -> None:
    pack = pack_with("a{{opt}}b", [var("opt")])
    rendered = render(pack, {})
    assert (rendered.text, rendered.variables) == ("ab", {})
    assert render(pack, {"opt": None}).text == "ab"


def test_values_are_never_expanded_again() -> None:
    document = minimal_pack(system_template="{{a}}|{{b}}")
    document["fragments"] = {"secret": "S"}
    pack = parse_pack(document)
    rendered = render(pack, {"a": "{{b}}", "b": "{{fragment:secret}} {{current_date}}"})
    assert rendered.text == "{{b}}|{{fragment:secret}} {{current_date}}"


def test_fragments_are_expanded_with_variables() -> None:
    document = minimal_pack(
        system_template="Start. {{fragment:greeting}} End.",
        variables=[var("name", required=True)],
    )
    document["fragments"] = {
        "greeting": "Hello {{name}}, {{ fragment:date }}",
        "date": "it is {{current_weekday}}.",
    }
    pack = parse_pack(document)
    assert render(pack, {"name": "Ann"}).text == "Start. Hello Ann, it is Sunday. End."
    assert invalid(pack, {}) == [
        {"loc": ["variables", "name"], "msg": "required variable is missing"}
    ]


def test_model_overrides() -> None:
    overrides = {
        "small": {
            "system_template_prefix": "[{{mode}}] ",
            "system_template_suffix": " Be brief.",
            "parameters": {"max_tokens": 100},
        },
        "other": {"system_template": "Replaced for {{who}}.", "parameters": {"top_k": None}},
    }
    pack = parse_pack(
        minimal_pack(
            system_template="Base for {{who}}.",
            variables=[var("who", default="all"), var("mode", default="fast")],
            parameters={"temperature": 0.5, "max_tokens": 500},
            model_overrides=overrides,
        )
    )
    prompt = pack.prompts["chat"]
    assert effective_template(prompt) == "Base for {{who}}."
    assert effective_template(prompt, "unknown-model") == "Base for {{who}}."
    assert effective_template(prompt, "small") == "[{{mode}}] Base for {{who}}. Be brief."
    assert render_system_prompt(pack, "chat", {}, now=NOW, model="small").text == (
        "[fast] Base for all. Be brief."
    )
    assert render_system_prompt(pack, "chat", {}, now=NOW, model="other").text == (
        "Replaced for all."
    )
    assert effective_parameters(prompt) == {"temperature": 0.5, "max_tokens": 500}
    assert effective_parameters(prompt, "small") == {"temperature": 0.5, "max_tokens": 100}
    assert effective_parameters(prompt, "other") == {
        "temperature": 0.5,
        "max_tokens": 500,
        "top_k": None,
    }


@given(st.text())
def test_any_string_value_is_inserted_verbatim(value: str) -> None:
    pack = pack_with("<{{x}}>{{ y }}", [var("y", default="{{x}}")])
    assert render(pack, {"x": value}).text == f"<{value}>{{{{x}}}}"


def test_returned_defaults_are_copies() -> None:
    pack = pack_with("{{items}}", [var("items", "array", default=["a"])])
    render(pack, {}).variables["items"].append("mutated")
    assert pack.prompts["chat"].variables[0].default == ["a"]
    assert render(pack, {}).text == '["a"]'
