"""`parse_pack`: schema validation plus semantic checks, reported together.

Semantic checks (beyond what the JSON Schema can express):
- every entry of a prompt's `tools` selects at least one pack tool (`prefix*` allowed),
  except `mcp__...` entries: they name MCP server tools, known only when servers connect;
- a pack tool's `name` equals its key (prompts reference keys, models call names);
- every `{{fragment:name}}` include names a declared fragment; includes are acyclic and at
  most `templates.MAX_FRAGMENT_DEPTH` deep;
- `template_engine.syntax` is one Parley renders (`{{variable}}`);
- on upload only (`request_caps`): the pack version is at most 100 characters and a
  prompt's key at most 200 (what `pack_version` and `prompt_name` may be), and each system
  template, fragments expanded, is within the `system_prompt` cap (200,000 characters);
- variable names are unique within a prompt; a `validation.pattern` compiles; a declared
  `default` satisfies the variable's own type and validation.

They run on the raw document and skip whatever is malformed (the schema errors already say
so), so one `InvalidPack` lists schema and semantic problems at once.

`required: true` together with a `default` is only a warning (`pack_warnings`): the schema
says the two should not be combined, but a real pack does it, so it is accepted and the
default is used when the client omits the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from app.domain.limits import (
    MAX_PACK_VERSION_CHARS,
    MAX_PROMPT_NAME_CHARS,
    MAX_SYSTEM_PROMPT_CHARS,
)
from app.domain.patterns import PatternError, author_pattern, pattern_error_text
from app.errors import InvalidPack
from app.packs.media import unenforced_fields
from app.packs.models import PromptPack, Variable
from app.packs.semver import SEMVER_PATTERN
from app.packs.templates import (
    SUPPORTED_SYNTAX_RE,
    FragmentError,
    expand_fragment,
    expanded_length,
    fragment_refs,
)
from app.packs.tools import MCP_PREFIX, matching_tool_names
from app.packs.variables import value_problems

ErrorItem = dict[str, Any]
Loc = list[str | int]

_OVERRIDE_TEMPLATE_KEYS = ("system_template", "system_template_prefix", "system_template_suffix")
_MESSAGES = {
    "extra_forbidden": "unknown field, not allowed by the PromptPack schema",
    "missing": "required field is missing",
}

__all__ = ["pack_warnings", "parse_pack", "schema_errors", "semantic_errors"]


def parse_pack(document: Any, *, request_caps: bool = False) -> PromptPack:
    """Validate a decoded pack document; `InvalidPack` lists every problem found.

    `request_caps`: also hold it to the caps a request has (an upload: `POST /packs`).
    Packs already stored or read from pack files are not, so that a pack accepted before
    the caps existed still loads (an `InvalidPack` there would drop it on every
    instance, and with it every conversation of it)."""
    if isinstance(document, PromptPack):
        document = document.to_document()
    pack: PromptPack | None = None
    errors: list[ErrorItem] = []
    try:
        pack = PromptPack.model_validate(document)
    except ValidationError as exc:
        errors = pydantic_errors(exc)
    errors.extend(semantic_errors(document, request_caps=request_caps))
    if errors or pack is None:
        raise InvalidPack(_detail(document, errors), errors=errors)
    return pack


def schema_errors(document: Any) -> list[ErrorItem]:
    """Only the schema-level problems (what the official JSON Schema would also report)."""
    try:
        PromptPack.model_validate(document)
    except ValidationError as exc:
        return pydantic_errors(exc)
    return []


def pydantic_errors(exc: ValidationError) -> list[ErrorItem]:
    items: list[ErrorItem] = []
    for err in exc.errors(include_url=False):
        msg = _MESSAGES.get(err["type"], err["msg"]).removeprefix("Value error, ")
        if (
            err["type"] == "string_pattern_mismatch"
            and err.get("ctx", {}).get("pattern") == SEMVER_PATTERN
        ):
            msg = f"version must be SemVer (MAJOR.MINOR.PATCH), got {err['input']!r}"
        items.append({"loc": list(err["loc"]), "msg": msg})
    return items


def _detail(document: Any, errors: list[ErrorItem]) -> str:
    pack_id = document.get("id") if isinstance(document, dict) else None
    name = f" {pack_id!r}" if isinstance(pack_id, str) else ""
    count = len(errors)
    return f"PromptPack{name} is invalid: {count} problem{'s' if count != 1 else ''} found."


# --- semantic checks ---------------------------------------------------------------------


def semantic_errors(document: Any, *, request_caps: bool = False) -> list[ErrorItem]:
    """Problems the schema cannot express; see the module docstring (the caps only with
    `request_caps`)."""
    if not isinstance(document, dict):
        return []
    errors: list[ErrorItem] = []
    engine = document.get("template_engine")
    syntax = engine.get("syntax") if isinstance(engine, dict) else None
    if isinstance(syntax, str) and not SUPPORTED_SYNTAX_RE.match(syntax):
        errors.append(
            _err(
                ["template_engine", "syntax"],
                f"unsupported template syntax {syntax!r}; Parley renders {{{{variable}}}}",
            )
        )
    fragments = _string_values(document.get("fragments"))
    lengths: dict[str, int] = {}
    for name in fragments:
        if request_caps and (
            too_long := _length_error(["fragments", name], fragments[name], fragments, lengths)
        ):
            errors.append(too_long)
            continue  # not expanded: that is what would cost
        try:
            expand_fragment(name, fragments)
        except FragmentError as exc:
            errors.append(_err(["fragments", name], str(exc)))
    tools = document.get("tools")
    tool_names = [k for k in tools if isinstance(k, str)] if isinstance(tools, dict) else []
    for key, tool in tools.items() if isinstance(tools, dict) else ():
        tool_name = tool.get("name") if isinstance(tool, dict) else None
        if isinstance(tool_name, str) and tool_name != key:
            errors.append(_err(["tools", key, "name"], f"must equal its key {key!r}"))
    version = document.get("version")
    if request_caps and isinstance(version, str) and len(version) > MAX_PACK_VERSION_CHARS:
        errors.append(
            _err(
                ["version"],
                f"at most {MAX_PACK_VERSION_CHARS} characters (what pack_version may be; a "
                "conversation's pack_version must survive export and import)",
            )
        )
    prompts = document.get("prompts")
    for prompt_key, prompt in prompts.items() if isinstance(prompts, dict) else ():
        if request_caps and len(prompt_key) > MAX_PROMPT_NAME_CHARS:
            errors.append(
                _err(
                    ["prompts", prompt_key],
                    f"prompt names are at most {MAX_PROMPT_NAME_CHARS} characters (a "
                    "longer one could never be named by prompt_name)",
                )
            )
        if isinstance(prompt, dict):
            loc: Loc = ["prompts", prompt_key]
            if request_caps:
                errors.extend(_template_length_errors(loc, prompt, fragments, lengths))
            errors.extend(_prompt_errors(loc, prompt, fragments, tool_names))
    return errors


def _length_error(
    loc: Loc, template: str, fragments: Mapping[str, str], lengths: dict[str, int]
) -> ErrorItem | None:
    size = expanded_length(template, fragments, lengths)
    if size <= MAX_SYSTEM_PROMPT_CHARS:
        return None
    return _err(
        loc,
        f"expands to {size} characters with its fragments; a system prompt is at most "
        f"{MAX_SYSTEM_PROMPT_CHARS}",
    )


def _template_length_errors(
    loc: Loc, prompt: dict[str, Any], fragments: Mapping[str, str], lengths: dict[str, int]
) -> list[ErrorItem]:
    """The system prompt a template renders is held to the cap a client's `system_prompt`
    has (outside tester T16: a 3 MB template made 3 MB system prompts): the template with
    its fragments expanded, placeholders as written, for the prompt and for each model
    override (prefix + template + suffix, as `render.effective_template` joins them)."""
    base = prompt.get("system_template")
    if not isinstance(base, str):
        return []
    found = [_length_error([*loc, "system_template"], base, fragments, lengths)]
    overrides = prompt.get("model_overrides")
    for model, override in overrides.items() if isinstance(overrides, dict) else ():
        if not isinstance(override, dict):
            continue
        parts = [
            override.get(key, base if key == "system_template" else "")
            for key in ("system_template_prefix", "system_template", "system_template_suffix")
        ]
        if all(isinstance(part, str) for part in parts):
            found.append(
                _length_error([*loc, "model_overrides", model], "".join(parts), fragments, lengths)
            )
    return [e for e in found if e is not None]


def _prompt_errors(
    loc: Loc, prompt: dict[str, Any], fragments: Mapping[str, str], tool_names: list[str]
) -> list[ErrorItem]:
    errors = _include_errors([*loc, "system_template"], prompt.get("system_template"), fragments)
    overrides = prompt.get("model_overrides")
    for model, override in overrides.items() if isinstance(overrides, dict) else ():
        if isinstance(override, dict):
            for key in _OVERRIDE_TEMPLATE_KEYS:
                where = [*loc, "model_overrides", model, key]
                errors.extend(_include_errors(where, override.get(key), fragments))
    tools = prompt.get("tools")
    for i, entry in enumerate(tools) if isinstance(tools, list) else ():
        if isinstance(entry, str) and entry.startswith(MCP_PREFIX):
            continue
        if isinstance(entry, str) and not matching_tool_names(entry, tool_names):
            defined = ", ".join(tool_names) or "none"
            errors.append(
                _err([*loc, "tools", i], f"{entry!r} matches no pack tool (defined: {defined})")
            )
    variables = prompt.get("variables")
    seen: set[str] = set()
    for i, raw in enumerate(variables) if isinstance(variables, list) else ():
        try:
            variable = Variable.model_validate(raw)
        except ValidationError:
            continue  # reported by the schema check
        if variable.name in seen:
            errors.append(_err([*loc, "variables", i, "name"], "duplicate variable name"))
        seen.add(variable.name)
        errors.extend(_variable_errors([*loc, "variables", i], variable))
    return errors


def _variable_errors(loc: Loc, variable: Variable) -> list[ErrorItem]:
    rules = variable.validation
    if rules is not None and rules.pattern is not None:
        try:
            author_pattern(rules.pattern)
        except PatternError as exc:
            msg = (
                f"not a valid regular expression (RE2 syntax, as Go's regexp: no "
                f"backreferences or lookaround): {pattern_error_text(exc)}"
            )
            return [_err([*loc, "validation", "pattern"], msg)]
    if not variable.has_default:
        return []
    return [
        _err([*loc, "default"], f"default violates the variable's own rules: {problem}")
        for problem in value_problems(variable, variable.default)
    ]


def _include_errors(loc: Loc, template: Any, fragments: Mapping[str, str]) -> list[ErrorItem]:
    """Undefined fragments included directly by `template` (deeper ones are reported on
    the fragment that includes them)."""
    if not isinstance(template, str):
        return []
    declared = ", ".join(sorted(fragments)) or "none"
    return [
        _err(loc, f"includes undefined fragment {name!r}; fragments declared: {declared}")
        for name in fragment_refs(template)
        if name not in fragments
    ]


def _string_values(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _err(loc: Loc, msg: str) -> ErrorItem:
    return {"loc": loc, "msg": msg}


# --- warnings ----------------------------------------------------------------------------


def pack_warnings(pack: PromptPack) -> list[ErrorItem]:
    """Legal but questionable things in a valid pack, worth logging when it is loaded."""
    warnings: list[ErrorItem] = []
    for prompt_key, prompt in pack.prompts.items():
        for i, variable in enumerate(prompt.variables):
            if variable.required and variable.has_default:
                warnings.append(
                    _err(
                        ["prompts", prompt_key, "variables", i],
                        f"variable {variable.name!r} is required but has a default; "
                        "the default is used when the client omits it",
                    )
                )
        if prompt.media is not None:
            for loc, msg in unenforced_fields(prompt.media):
                warnings.append(_err(["prompts", prompt_key, "media", *loc], msg))
    return warnings
