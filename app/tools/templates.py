"""The `{{.field}}` subset of Go's text/template that RuntimeConfig templates may use.

PromptKit renders `mock_template`, HTTP `url` path parameters and `request.header_params`
with Go's text/template. Parley implements the part of it that substitutes arguments and
refuses everything else when the RuntimeConfig is loaded (so nothing fails at call time):

* `{{.name}}` and `{{ .name }}` insert the tool argument `name`; `{{.a.b}}` walks into an
  object argument. Names are identifiers (`[A-Za-z_][A-Za-z0-9_]*`).
* Text outside `{{ }}` is copied verbatim.
* Refused: actions (`if`, `range`, `with`, `eq`, ...), pipelines (`|`), functions,
  variables (`$x`), comments, trim markers (`{{-`, `-}}`), `{{.}}`, and an unclosed `{{`.

Values render like Go prints them: strings as they are, `true`/`false`, integers without a
decimal point, other numbers in their shortest form. Objects and arrays render as JSON
(Go would print `map[...]`, which is of no use to anyone). A missing argument renders as
`<no value>` (Go's `missingkey=default`) unless the caller asks for strictness.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FIELD = re.compile(r"^\s*((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*$")
NO_VALUE = "<no value>"


class TemplateError(ValueError):
    """The template uses something outside the supported `{{.field}}` subset."""


class MissingArgument(KeyError):
    """A strict render met a field the arguments do not have."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True)
class FieldTemplate:
    """A parsed template: literal text and field paths, alternating."""

    source: str
    literals: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, source: str) -> FieldTemplate:
        literals: list[str] = []
        paths: list[tuple[str, ...]] = []
        pos = 0
        for match in _ACTION.finditer(source):
            inner = match.group(1)
            field = _FIELD.match(inner)
            if field is None or inner.startswith("-") or inner.endswith("-"):
                raise TemplateError(
                    f"{{{{{inner}}}}} is not supported: only {{{{.field}}}} substitutions are "
                    "(no actions, pipelines, functions or trim markers)"
                )
            literals.append(source[pos : match.start()])
            paths.append(tuple(field.group(1).split(".")[1:]))
            pos = match.end()
        rest = source[pos:]
        if "{{" in rest:
            raise TemplateError("unclosed '{{' in template")
        literals.append(rest)
        return cls(source=source, literals=tuple(literals), paths=tuple(paths))

    @property
    def fields(self) -> frozenset[str]:
        """The top-level argument names the template reads."""
        return frozenset(path[0] for path in self.paths)

    @property
    def is_static(self) -> bool:
        return not self.paths

    def render(
        self,
        args: Mapping[str, Any],
        *,
        strict: bool = False,
        quote: Any = None,
    ) -> str:
        """Substitute `args`. `strict` raises `MissingArgument` instead of `<no value>`;
        `quote(text) -> text` escapes each substituted value (e.g. for a URL path)."""
        out = [self.literals[0]]
        for path, literal in zip(self.paths, self.literals[1:], strict=True):
            found, value = _lookup(args, path)
            if not found:
                if strict:
                    raise MissingArgument(".".join(path))
                text = NO_VALUE
            else:
                text = format_value(value)
            out.append(quote(text) if quote is not None else text)
            out.append(literal)
        return "".join(out)


def _lookup(args: Mapping[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    value: Any = args
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return False, None
        value = value[key]
    return (value is not None), value


def format_value(value: Any) -> str:
    """How Go's text/template prints a JSON-decoded value (objects/arrays: JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
