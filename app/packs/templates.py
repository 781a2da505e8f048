"""The `{{variable}}` template syntax: placeholders, fragment includes, substitution.

- `{{name}}` / `{{ name }}`: a variable; `name` is an identifier (`[A-Za-z_][A-Za-z0-9_]*`).
- `{{fragment:name}}`: the pack fragment `name`, expanded (recursively, up to
  `MAX_FRAGMENT_DEPTH` levels) before variables are substituted.
- Anything else between braces (`{{#if x}}`, `{{ a.b }}`, a literal `{{` in prose) is not a
  placeholder and is left as written.

Substitution is a single pass over the expanded template: a value that itself contains
`{{...}}` is inserted verbatim and never expanded, so clients cannot inject placeholders or
fragments through variable values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

MAX_FRAGMENT_DEPTH = 8

PLACEHOLDER_RE = re.compile(
    r"\{\{\s*(?:fragment\s*:\s*(?P<fragment>[A-Za-z0-9_.-]+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*))\s*\}\}"
)

SUPPORTED_SYNTAX_RE = re.compile(r"^\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}\Z")
"""`template_engine.syntax` values Parley can render: `{{variable}}` and its spellings."""


class FragmentError(Exception):
    """A fragment include that cannot be expanded (undefined, cyclic or too deep)."""


def fragment_refs(text: str) -> list[str]:
    """Fragment names included directly by `text`, in order, without duplicates."""
    return list(
        dict.fromkeys(m["fragment"] for m in PLACEHOLDER_RE.finditer(text) if m["fragment"])
    )


def placeholder_names(text: str) -> list[str]:
    """Variable placeholders in `text` (not fragments), in order, without duplicates."""
    return list(dict.fromkeys(m["name"] for m in PLACEHOLDER_RE.finditer(text) if m["name"]))


def expanded_length(
    text: str, fragments: Mapping[str, str], memo: dict[str, int] | None = None
) -> int:
    """The length `text` has once its fragments are expanded, without expanding them:
    fragments that include each other many times can expand exponentially (8 levels of 100
    includes), which the length shows in time linear in the pack. Undefined and cyclic
    includes, and those past `MAX_FRAGMENT_DEPTH`, count as their own text
    (`expand_fragments` reports them)."""
    lengths = {} if memo is None else memo

    def length(source: str, chain: tuple[str, ...]) -> int:
        total = len(source)
        for m in PLACEHOLDER_RE.finditer(source):
            name = m["fragment"]
            if name is None or name not in fragments or name in chain:
                continue
            if len(chain) >= MAX_FRAGMENT_DEPTH:  # too deep: reported by the expansion
                continue
            if name not in lengths:
                lengths[name] = length(fragments[name], (*chain, name))
            total += lengths[name] - len(m[0])
        return total

    return length(text, ())


def expand_fragments(text: str, fragments: Mapping[str, str]) -> str:
    """`text` with every `{{fragment:name}}` replaced by the fragment's (expanded) content.

    Raises `FragmentError` naming the include chain for an undefined fragment, a cycle, or
    nesting deeper than `MAX_FRAGMENT_DEPTH`.
    """
    return _expand(text, fragments, ())


def expand_fragment(name: str, fragments: Mapping[str, str]) -> str:
    """The fragment `name` fully expanded, as `{{fragment:name}}` would include it."""
    return _expand(fragments[name], fragments, (name,))


def _expand(text: str, fragments: Mapping[str, str], chain: tuple[str, ...]) -> str:
    def include(match: re.Match[str]) -> str:
        name = match["fragment"]
        if name is None:
            return match[0]
        via = " -> ".join((*chain, name))
        if name in chain:
            raise FragmentError(f"fragment include cycle: {via}")
        if len(chain) >= MAX_FRAGMENT_DEPTH:
            raise FragmentError(f"fragments nested deeper than {MAX_FRAGMENT_DEPTH}: {via}")
        if name not in fragments:
            declared = ", ".join(sorted(fragments)) or "none"
            where = f" (via {via})" if chain else ""
            raise FragmentError(
                f"undefined fragment {name!r}{where}; fragments declared: {declared}"
            )
        return _expand(fragments[name], fragments, (*chain, name))

    return PLACEHOLDER_RE.sub(include, text)


def substitute(text: str, value_of: Callable[[str], str]) -> str:
    """Replace each variable placeholder by `value_of(name)`, in one pass.

    Fragment includes must have been expanded already (`expand_fragments`).
    """

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        return match[0] if name is None else value_of(name)

    return PLACEHOLDER_RE.sub(replace, text)
