"""parse_pack: models, error reporting, semantic checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.errors import InvalidPack
from app.packs import (
    PromptPack,
    Tool,
    ToolPolicy,
    pack_warnings,
    parse_pack,
)
from tests.unit.packs.helpers import (
    fixture,
    fixture_files,
    load_json,
    minimal_pack,
    mutate,
    require_fixtures,
)


def problems(document: Any) -> list[dict[str, Any]]:
    with pytest.raises(InvalidPack) as info:
        parse_pack(document)
    assert info.value.errors, "InvalidPack must list its problems"
    for item in info.value.errors:
        assert set(item) == {"loc", "msg"}
        assert isinstance(item["loc"], list)
        assert isinstance(item["msg"], str) and item["msg"]
    return info.value.errors


def locs(document: Any) -> list[list[str | int]]:
    return [e["loc"] for e in problems(document)]


def test_fixture_corpus_is_present() -> None:
    require_fixtures()
    assert len(fixture_files()) == 39


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_every_fixture_parses_and_round_trips(path: Path) -> None:
    document = load_json(path)
    pack = parse_pack(document)
    assert pack.id == document["id"]
    assert list(pack.prompts) == list(document["prompts"])
    assert pack.to_document() == document  # nothing lost, nothing added


def test_variables_and_tools_are_typed() -> None:
    pack = parse_pack(fixture("sdk__examples__variables__assistant"))
    variable = pack.prompts["assistant"].variables[0]
    assert (variable.name, variable.type, variable.required) == ("current_time", "string", False)
    assert variable.has_default and variable.default == "unknown"

    tools_pack = parse_pack(fixture("sdk__examples__tools__tools"))
    tool = tools_pack.tools["get_weather"]
    assert isinstance(tool, Tool)
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city name"},
            "country": {"type": "string", "description": "The country code or name"},
        },
        "required": ["city", "country"],
    }


def test_tool_parameters_keep_other_json_schema_keywords() -> None:
    document = minimal_pack(tools=["t"])
    params = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "additionalProperties": False,
        "$defs": {"x": {"type": "string"}},
    }
    document["tools"] = {"t": {"name": "t", "description": "d", "parameters": params}}
    assert parse_pack(document).tools["t"].parameters == params


def test_tool_policy_defaults_are_the_schema_defaults() -> None:
    pack = parse_pack(minimal_pack(tool_policy={}))
    assert pack.prompts["chat"].tool_policy == ToolPolicy(
        tool_choice="auto", max_rounds=5, max_tool_calls_per_turn=10, blocklist=[]
    )
    assert pack.to_document()["prompts"]["chat"]["tool_policy"] == {}


def test_model_overrides_are_validated_plain_dicts() -> None:
    overrides = {
        "gpt-4o": {"system_template_suffix": " Be brief.", "parameters": {"temperature": 0.1}},
        "claude": {"system_template": "Other."},
    }
    pack = parse_pack(minimal_pack(model_overrides=overrides))
    assert pack.prompts["chat"].model_overrides == overrides
    assert isinstance(pack.prompts["chat"].model_overrides["gpt-4o"]["parameters"], dict)

    bad = {"gpt-4o": {"suffix": "x", "parameters": {"temperature": 5}}}
    assert sorted(map(str, locs(minimal_pack(model_overrides=bad)))) == [
        "['prompts', 'chat', 'model_overrides', 'gpt-4o', 'parameters', 'temperature']",
        "['prompts', 'chat', 'model_overrides', 'gpt-4o', 'suffix']",
    ]


def test_models_are_immutable() -> None:
    pack = parse_pack(minimal_pack())
    with pytest.raises(ValidationError):
        pack.id = "other"  # type: ignore[misc]


def test_no_coercion_and_no_nulls() -> None:
    # pydantic's lax mode would accept all of these; JSON Schema does not.
    doc = minimal_pack(parameters={"max_tokens": "100", "temperature": True}, description=None)
    assert sorted(map(str, locs(doc))) == [
        "['prompts', 'chat', 'description']",
        "['prompts', 'chat', 'parameters', 'max_tokens']",
        "['prompts', 'chat', 'parameters', 'temperature']",
    ]
    # ...but a JSON integer may be written 2.0, and top_k may be an explicit null.
    pack = parse_pack(minimal_pack(parameters={"max_tokens": 2.0, "top_k": None}))
    assert pack.prompts["chat"].parameters is not None
    assert pack.prompts["chat"].parameters.max_tokens == 2


@pytest.mark.parametrize("document", [None, [], "pack", 3])
def test_non_object_document(document: Any) -> None:
    assert locs(document) == [[]]


def test_every_problem_is_reported_at_once() -> None:
    document = minimal_pack(
        tools=["missing_tool"],
        system_template="Hi {{fragment:nope}}",
        variables=[{"name": "n", "type": "text", "required": False}],
    )
    document["id"] = "Bad_Id"
    document["surprise"] = 1
    with pytest.raises(InvalidPack) as info:
        parse_pack(document)
    assert info.value.detail == "PromptPack 'Bad_Id' is invalid: 5 problems found."
    assert [e["loc"] for e in info.value.errors or []] == [
        # schema problems first (pydantic order), then semantic ones
        ["id"],
        ["prompts", "chat", "variables", 0, "type"],
        ["surprise"],
        ["prompts", "chat", "system_template"],
        ["prompts", "chat", "tools", 0],
    ]
    assert info.value.status == 422 and info.value.code == "invalid_pack"


# --- semantic checks ---------------------------------------------------------------------


def with_tools(names: list[str], **prompt_fields: Any) -> dict[str, Any]:
    document = minimal_pack(**prompt_fields)
    document["tools"] = {n: {"name": n, "description": f"tool {n}"} for n in names}
    return document


def test_prompt_tool_entry_must_match_a_pack_tool() -> None:
    errors = problems(with_tools(["crm_get"], tools=["crm_get", "crm_put", "db_*"]))
    assert errors == [
        {
            "loc": ["prompts", "chat", "tools", 1],
            "msg": "'crm_put' matches no pack tool (defined: crm_get)",
        },
        {
            "loc": ["prompts", "chat", "tools", 2],
            "msg": "'db_*' matches no pack tool (defined: crm_get)",
        },
    ]
    parse_pack(with_tools(["crm_get", "crm_put"], tools=["crm_*", "*"]))


def test_tool_key_must_equal_tool_name() -> None:
    document = with_tools(["a"])
    document["tools"]["a"]["name"] = "b"
    assert problems(document) == [{"loc": ["tools", "a", "name"], "msg": "must equal its key 'a'"}]


def test_fragments() -> None:
    document = minimal_pack(system_template="A {{fragment:intro}} {{ fragment : other }}")
    document["fragments"] = {"intro": "x {{fragment:deep}}", "other": "y"}
    assert locs(document) == [["fragments", "intro"]]  # `deep` is undefined, inside `intro`

    document["fragments"]["deep"] = "z"
    parse_pack(document)

    no_fragments = minimal_pack(system_template="{{fragment:intro}}")
    assert problems(no_fragments) == [
        {
            "loc": ["prompts", "chat", "system_template"],
            "msg": "includes undefined fragment 'intro'; fragments declared: none",
        }
    ]


def test_fragment_cycles_and_depth() -> None:
    document = minimal_pack(system_template="{{fragment:a}}")
    document["fragments"] = {"a": "{{fragment:b}}", "b": "{{fragment:a}}"}
    errors = problems(document)
    assert errors[0] == {"loc": ["fragments", "a"], "msg": "fragment include cycle: a -> b -> a"}
    assert [e["loc"] for e in errors] == [["fragments", "a"], ["fragments", "b"]]

    deep = minimal_pack(system_template="{{fragment:f0}}")
    deep["fragments"] = {f"f{i}": f"{{{{fragment:f{i + 1}}}}}" for i in range(9)} | {"f9": "end"}
    assert ["fragments", "f0"] in locs(deep)
    deep["fragments"] = {f"f{i}": f"{{{{fragment:f{i + 1}}}}}" for i in range(7)} | {"f7": "end"}
    parse_pack(deep)


def test_fragment_include_in_model_override_checked() -> None:
    document = minimal_pack(model_overrides={"m": {"system_template_suffix": "{{fragment:x}}"}})
    assert locs(document) == [["prompts", "chat", "model_overrides", "m", "system_template_suffix"]]


@pytest.mark.parametrize("syntax", ["${variable}", "{variable}", "<<x>>"])
def test_unsupported_template_syntax(syntax: str) -> None:
    document = minimal_pack()
    document["template_engine"]["syntax"] = syntax
    assert locs(document) == [["template_engine", "syntax"]]


@pytest.mark.parametrize("syntax", ["{{variable}}", "{{ variable }}", "{{var}}"])
def test_supported_template_syntax(syntax: str) -> None:
    document = minimal_pack()
    document["template_engine"]["syntax"] = syntax
    parse_pack(document)


def var(name: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "required": extra.pop("required", False), **extra}


def test_duplicate_variable_names() -> None:
    document = minimal_pack(variables=[var("a"), var("b"), var("a")])
    assert problems(document) == [
        {"loc": ["prompts", "chat", "variables", 2, "name"], "msg": "duplicate variable name"}
    ]


def test_invalid_validation_pattern() -> None:
    document = minimal_pack(variables=[var("a", validation={"pattern": "(unclosed"})])
    assert locs(document) == [["prompts", "chat", "variables", 0, "validation", "pattern"]]


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (var("n", "number", default="5"), "must be of type number, got string"),
        (var("n", "number", default=True), "must be of type number, got boolean"),
        (var("b", "boolean", default=0), "must be of type boolean, got number"),
        (var("o", "object", default=[]), "must be of type object, got array"),
        (var("s", default="x", validation={"min_length": 2}), "at least 2 characters"),
        (var("s", default="abc", validation={"max_length": 2}), "at most 2 characters"),
        (var("s", default="abc", validation={"pattern": "^[0-9]+$"}), "must match pattern"),
        (var("s", default="c", validation={"enum": ["a", "b"]}), 'must be one of: "a", "b"'),
        (var("n", "number", default=0, validation={"minimum": 1}), "must be >= 1"),
        (var("n", "number", default=2.5, validation={"maximum": 2}), "must be <= 2"),
        (var("n", "number", default=True, validation={"enum": [1]}), "got boolean"),
    ],
)
def test_default_must_satisfy_its_own_rules(variable: dict[str, Any], message: str) -> None:
    errors = problems(minimal_pack(variables=[variable]))
    assert len(errors) == 1
    assert errors[0]["loc"] == ["prompts", "chat", "variables", 0, "default"]
    assert errors[0]["msg"].startswith("default violates the variable's own rules: ")
    assert message in errors[0]["msg"]


@pytest.mark.parametrize(
    "variable",
    [
        var("n", "number", default=1, validation={"enum": [1.0, 2]}),
        var("n", "number", default=3, validation={"minimum": 3, "maximum": 3}),
        var("s", default="ab", validation={"pattern": "b"}),  # unanchored, like JSON Schema
        var("a", "array", default=[1, "x"]),
        var("o", "object", default={"k": [1]}, validation={"enum": [{"k": [1.0]}]}),
        var("s", default=None),  # a null default is no default
    ],
)
def test_valid_defaults(variable: dict[str, Any]) -> None:
    parse_pack(minimal_pack(variables=[variable]))


def test_required_with_default_is_accepted_with_a_warning() -> None:
    # The schema says not to combine them, but a real fixture pack does.
    pack = parse_pack(fixture("sdk__examples__openai-realtime__openai-realtime"))
    assert pack_warnings(pack) == [
        {
            "loc": ["prompts", "translator", "variables", 0],
            "msg": "variable 'target_language' is required but has a default; "
            "the default is used when the client omits it",
        }
    ]
    assert pack_warnings(parse_pack(fixture("sdk__examples__tools__tools"))) == []


def test_parse_pack_accepts_a_pack_instance() -> None:
    pack = parse_pack(minimal_pack())
    assert isinstance(parse_pack(pack), PromptPack)
    assert parse_pack(pack) == pack


def test_strict_semantic_checks_skip_malformed_parts() -> None:
    document = mutate(minimal_pack(), ("prompts", "chat", "tools"), "not-a-list")
    document["tools"] = ["not", "a", "dict"]
    document["fragments"] = {"a": 1}
    assert sorted(map(str, locs(document))) == [
        "['fragments', 'a']",
        "['prompts', 'chat', 'tools']",
        "['tools']",
    ]
