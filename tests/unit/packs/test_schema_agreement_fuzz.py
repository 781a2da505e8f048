"""Property-based agreement between our models and the official JSON Schema.

Hypothesis mutates the strictly-modelled parts of real packs at random (1-2 changes: a
random JSON value, a value near a field's valid/invalid boundary, or a deletion) and the
schema-level verdict of our models (`schema_errors`, i.e. without the semantic checks) must
equal the JSON Schema verdict. Strings avoid newlines and non-ASCII digits, where the two
deliberately differ (see `test_patterns_use_ecma_semantics`).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from app.packs.validation import schema_errors
from tests.unit.packs.helpers import DELETE, fixture, mutate, require_fixtures
from tests.unit.packs.test_schema_agreement import (
    REALTIME,
    RT_PARAMS,
    TOOL_POLICY,
    TOOLS,
    VAR0,
    VARS,
    WEATHER,
    Path_,
    validator,
)

# No newline and only ASCII digits: see test_patterns_use_ecma_semantics for those.
ALPHABET = "abcxyzAZ019_-.+v é:{}*"
KEYS = [
    "type", "properties", "required", "name", "description", "enabled", "pattern",
    "min_length", "max_length", "minimum", "maximum", "enum", "tool_choice", "max_rounds",
    "max_tool_calls_per_turn", "blocklist", "temperature", "max_tokens", "top_p", "top_k",
    "version", "syntax", "features", "id", "system_template", "x", "default",
]  # fmt: skip
SPECIAL_STRINGS = [
    "", "1.0.0", "v1.2.3-rc.1+b.2", "01.0.0", "1.0", "1.0.0-", "object", "array", "string",
    "number", "boolean", "auto", "none", "required", "basic_substitution", "fragments", "loops",
    "a-b", "a_b", "A", "get_time", "get_weather", "{{variable}}", "v1",
]  # fmt: skip
NUMBERS = [0, 1, 2, 3, 10, -1, -2, -3, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -2.5, 100.0, 1e3]

scalars = (
    st.none()
    | st.booleans()
    | st.sampled_from(NUMBERS)
    | st.integers(-5, 20)
    | st.sampled_from(SPECIAL_STRINGS)
    | st.text(alphabet=ALPHABET, max_size=6)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=8,
)

TARGETS: list[tuple[str, Path_]] = [
    (TOOLS, p)
    for p in [
        ("id",), ("name",), ("version",), ("description",), ("$schema",), ("x",),
        ("template_engine",), ("template_engine", "version"), ("template_engine", "syntax"),
        ("template_engine", "features"), ("template_engine", "x"), ("prompts",),
        ("prompts", "assistant"), ("prompts", "assistant", "id"), ("prompts", "assistant", "name"),
        ("prompts", "assistant", "version"), ("prompts", "assistant", "system_template"),
        ("prompts", "assistant", "description"), ("prompts", "assistant", "tools"),
        ("prompts", "assistant", "x"), TOOL_POLICY, ("prompts", "assistant", "parameters"),
        ("prompts", "assistant", "variables"), ("prompts", "assistant", "model_overrides"),
        ("tools",), WEATHER, (*WEATHER, "name"), (*WEATHER, "description"), (*WEATHER, "x"),
        (*WEATHER, "parameters"), (*WEATHER, "parameters", "type"),
        (*WEATHER, "parameters", "properties"), (*WEATHER, "parameters", "required"),
        (*WEATHER, "parameters", "properties", "city"), ("fragments",),
    ]
] + [
    (VARS, p)
    for p in [
        VAR0, (*VAR0, "name"), (*VAR0, "type"), (*VAR0, "required"), (*VAR0, "validation"),
        (*VAR0, "description"), (*VAR0, "x"), ("prompts", "assistant", "variables", 1),
    ]
] + [
    (REALTIME, (*RT_PARAMS, key))
    for key in ["temperature", "max_tokens", "top_p", "top_k", "frequency_penalty",
                "presence_penalty", "x"]
]  # fmt: skip

small_ints = st.integers(-2, 5) | st.sampled_from([1.0, 2.5, None, True])
numbers = st.floats(-3.5, 3.5, allow_nan=False) | st.integers(-3, 3) | st.sampled_from(["1"])
texts = st.text(alphabet=ALPHABET, max_size=6)
# Values near the valid/invalid boundary of each kind of field, so that a fair share of the
# generated packs is valid (random JSON alone almost never is).
FOCUSED: dict[str | int, st.SearchStrategy[Any]] = {
    "id": st.from_regex(r"[a-zA-Z0-9_-]{0,6}", fullmatch=True),
    "name": st.from_regex(r"[a-zA-Z0-9_-]{0,6}", fullmatch=True),
    "version": st.from_regex(
        r"v?(0|[1-9]|0[0-9])\.[0-9]{1,2}\.[0-9]{1,2}(-[a-z0-9.]{0,4})?(\+[a-z0-9.]{0,4})?",
        fullmatch=True,
    ),
    "type": st.sampled_from(["string", "number", "boolean", "object", "array", "text"]),
    "required": st.booleans() | st.just("true") | st.lists(st.sampled_from(["city", 1])),
    "temperature": numbers,
    "top_p": numbers,
    "frequency_penalty": numbers,
    "presence_penalty": numbers,
    "max_tokens": small_ints,
    "top_k": small_ints,
    "features": st.lists(st.sampled_from(["basic_substitution", "fragments", "loops", "x"])),
    "validation": st.fixed_dictionaries(
        {},
        optional={
            "pattern": texts,
            "min_length": small_ints,
            "max_length": small_ints,
            "minimum": numbers,
            "maximum": numbers,
            "enum": st.lists(scalars, max_size=2) | scalars,
            "min": st.just(1),
        },
    ),
    "tool_policy": st.fixed_dictionaries(
        {},
        optional={
            "tool_choice": st.sampled_from(["auto", "required", "none", "always"]),
            "max_rounds": small_ints,
            "max_tool_calls_per_turn": small_ints,
            "blocklist": st.lists(texts, max_size=2) | texts,
        },
    ),
    "parameters": st.fixed_dictionaries(
        {},
        optional={
            "temperature": numbers,
            "max_tokens": small_ints,
            "top_k": small_ints,
            "top_p": numbers,
        },
    ),
    "model_overrides": st.dictionaries(
        texts,
        st.fixed_dictionaries(
            {},
            optional={
                "system_template_suffix": texts | st.none(),
                "parameters": st.fixed_dictionaries({}, optional={"temperature": numbers}),
                "suffix": texts,
            },
        ),
        max_size=2,
    ),
}


def change_for(target: tuple[str, Path_]) -> st.SearchStrategy[tuple[tuple[str, Path_], Any]]:
    values = st.one_of(json_values, st.just(DELETE))
    focused = FOCUSED.get(target[1][-1])
    if focused is not None:
        values = st.one_of(focused, focused, values)  # focused values twice as likely
    return st.tuples(st.just(target), values)


mutations = st.lists(st.sampled_from(TARGETS).flatmap(change_for), min_size=1, max_size=2)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations)
def test_random_mutations_agree_with_schema(
    changes: list[tuple[tuple[str, Path_], Any]],
) -> None:
    require_fixtures()
    base = changes[0][0][0]
    document: Any = fixture(base)
    for (other_base, path), value in changes:
        assume(other_base == base)
        try:
            document = mutate(document, path, value)
        except (KeyError, IndexError, TypeError):
            assume(False)  # an earlier change removed or replaced this path's parent
    ours = schema_errors(document)
    theirs = [f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(document)]
    note(f"ours={ours}\ntheirs={theirs}")
    assert (ours == []) == (theirs == [])
