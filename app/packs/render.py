"""Rendering a prompt's system template with enforced variables.

Value precedence for a placeholder: client-supplied value > built-in variable > declared
default. Built-ins win over defaults because real packs declare `current_date` & co. with a
placeholder default such as "unknown" that a runtime is expected to replace.

Variable rules (all problems are collected and raised as one `InvalidVariables`):
- a declared variable is type- and validation-checked; `null` counts as not supplied;
- a required variable must be supplied, unless it has a default (see `validation`);
- an optional declared variable with no value renders as an empty string;
- a name that is not declared, not a placeholder of the template and not a built-in is
  rejected as unknown (catches typos);
- an undeclared placeholder (packs use e.g. `{{input}}`) takes any JSON value from the
  client; left without a value it raises `UnresolvedPlaceholder`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.errors import InvalidVariables, PromptNotFound, UnresolvedPlaceholder
from app.packs.models import Prompt, PromptPack
from app.packs.templates import FragmentError, expand_fragments, placeholder_names, substitute
from app.packs.variables import format_value, json_type, value_problems

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_JSON_TYPES = frozenset({"string", "number", "boolean", "object", "array"})

BUILTIN_VARIABLES = frozenset(
    {
        "current_date",
        "current_time",
        "current_year",
        "current_month",
        "current_weekday",
        "current_hour",
    }
)


@dataclass(frozen=True)
class RenderedPrompt:
    """The system prompt text and the variable values it used (client values and applied
    defaults; built-in values are excluded since they change with time)."""

    text: str
    variables: dict[str, Any] = field(default_factory=dict)


def builtin_variables(now: datetime) -> dict[str, str]:
    """Built-ins from a timezone-aware `now`, in its own timezone. English names, no locale."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be timezone-aware")
    return {
        "current_date": f"{now.year:04d}-{now.month:02d}-{now.day:02d}",
        "current_time": f"{now.hour:02d}:{now.minute:02d}",
        "current_year": str(now.year),
        "current_month": _MONTHS[now.month - 1],
        "current_weekday": _WEEKDAYS[now.weekday()],
        "current_hour": str(now.hour),
    }


def get_prompt(pack: PromptPack, prompt_name: str) -> Prompt:
    """The prompt `prompt_name` of `pack`; `PromptNotFound` lists the available names."""
    prompt = pack.prompts.get(prompt_name)
    if prompt is None:
        available = ", ".join(sorted(pack.prompts))
        msg = (
            f"pack {pack.id!r} {pack.version} has no prompt {prompt_name!r}; available: {available}"
        )
        raise PromptNotFound(msg, errors=[{"loc": ["prompt_name"], "msg": msg}])
    return prompt


def effective_template(prompt: Prompt, model: str | None = None) -> str:
    """`system_template` after `model_overrides[model]` (replacement, prefix, suffix)."""
    override = prompt.model_overrides.get(model) if model is not None else None
    if not override:
        return prompt.system_template
    template: str = override.get("system_template", prompt.system_template)
    return (
        str(override.get("system_template_prefix", ""))
        + template
        + str(override.get("system_template_suffix", ""))
    )


def effective_parameters(prompt: Prompt, model: str | None = None) -> dict[str, Any]:
    """Generation parameters that are set: the prompt's, then `model_overrides[model]`'s."""
    params = prompt.parameters.model_dump(exclude_unset=True) if prompt.parameters else {}
    override = prompt.model_overrides.get(model) if model is not None else None
    if override and isinstance(override.get("parameters"), dict):
        params.update(override["parameters"])
    return params


def render_system_prompt(
    pack: PromptPack,
    prompt_name: str,
    variables: Mapping[str, Any],
    *,
    now: datetime,
    model: str | None = None,
) -> RenderedPrompt:
    """Render `prompt_name`'s system template (with `model`'s override when given).

    Raises `PromptNotFound`, `InvalidVariables` (one `errors` entry per problem, each at
    `["variables", name]`) or `UnresolvedPlaceholder`; see the module docstring for rules.
    """
    prompt = get_prompt(pack, prompt_name)
    builtins = builtin_variables(now)
    try:
        template = expand_fragments(effective_template(prompt, model), pack.fragments)
    except FragmentError as exc:  # parse_pack rejects these; defensive for hand-built packs
        raise UnresolvedPlaceholder(str(exc)) from exc
    used = placeholder_names(template)
    values, problems = _resolve(prompt_name, prompt, variables, used, builtins)
    reported = {name for name, _ in problems}
    declared = {v.name for v in prompt.variables}
    unresolved = [
        n
        for n in used
        if n not in values and n not in builtins and n not in declared and n not in reported
    ]
    if problems:
        problems.extend((name, _unresolved_message(name)) for name in unresolved)
        raise InvalidVariables(
            f"Invalid variables for prompt {prompt_name!r}: "
            + "; ".join(f"{name}: {msg}" for name, msg in problems),
            errors=[{"loc": ["variables", name], "msg": msg} for name, msg in problems],
        )
    if unresolved:
        raise UnresolvedPlaceholder(
            f"Prompt {prompt_name!r}: no value for "
            + ", ".join("{{" + name + "}}" for name in unresolved),
            errors=[{"loc": ["variables", n], "msg": _unresolved_message(n)} for n in unresolved],
        )

    def value_of(name: str) -> str:
        if name in values:
            return format_value(values[name])
        if name in builtins:
            return builtins[name]
        return ""  # an optional declared variable without a value

    return RenderedPrompt(text=substitute(template, value_of), variables=values)


def _resolve(
    prompt_name: str,
    prompt: Prompt,
    supplied: Mapping[str, Any],
    used: list[str],
    builtins: Mapping[str, str],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The values to render with (declared variables first, built-ins left out) and every
    problem as `(variable name, message)`."""
    declared = {v.name: v for v in prompt.variables}
    problems: list[tuple[str, str]] = []
    given: dict[str, Any] = {}
    for name, value in supplied.items():
        if name in declared:
            if value is not None:
                found = value_problems(declared[name], value)
                problems.extend((name, msg) for msg in found)
                if not found:
                    given[name] = value
        elif name in used or name in BUILTIN_VARIABLES:
            if json_type(value) in _JSON_TYPES:
                given[name] = value
            elif value is not None:
                problems.append((name, f"must be a JSON value, got {json_type(value)}"))
        else:
            problems.append((name, _unknown_message(prompt_name, prompt, used)))
    invalid = {name for name, _ in problems}

    values: dict[str, Any] = {}
    for variable in prompt.variables:
        name = variable.name
        if name in given:
            values[name] = given[name]
        elif name in invalid or name in builtins:
            continue  # already reported / the built-in beats the default
        elif variable.has_default:
            values[name] = copy.deepcopy(variable.default)  # never hand out the pack's own
        elif variable.required:
            problems.append((name, "required variable is missing"))
    values.update(given)
    return values, problems


def _unknown_message(prompt_name: str, prompt: Prompt, used: list[str]) -> str:
    known = dict.fromkeys([*(v.name for v in prompt.variables), *used])
    names = ", ".join(known) if known else "none"
    return f"unknown variable; prompt {prompt_name!r} accepts: {names} (plus built-ins)"


def _unresolved_message(name: str) -> str:
    return f"template placeholder {{{{{name}}}}} has no value; supply it in variables"
