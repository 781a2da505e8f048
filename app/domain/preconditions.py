"""`If-Match` (RFC 9110 §13.1.1) against a conversation's `version`, whose ETag is the
strong tag `"<version>"`.

The field is `*` (any current version) or a comma-separated list of entity tags; it holds
if any listed tag matches by the strong comparison: a weak tag (`W/"3"`) never matches, and
opaque tags compare character by character (`"03"` is not `"3"`). A well-formed tag that is
no version of ours matches nothing (412); only a field that is not that grammar is a 422.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.errors import InvalidRequest

# One list member (an entity-tag, or nothing: RFC 9110 §5.6.1 empty elements) and what
# ends it. etagc is %x21 / %x23-7E / obs-text: a comma may be inside a tag.
_MEMBER = re.compile(r'[ \t]*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(?:,|\Z)')
_VERSION = re.compile(r"0|[1-9][0-9]{0,18}")  # as `str(version)` writes it; < 2**63


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A parsed `If-Match`: `versions` None for `*`, else the versions its strong tags
    name (possibly none: then it holds for no version)."""

    versions: frozenset[int] | None

    def holds(self, version: int) -> bool:
        return self.versions is None or version in self.versions

    def __str__(self) -> str:
        if self.versions is None:
            return "*"
        return ", ".join(f'"{v}"' for v in sorted(self.versions)) or "(no strong tag)"


def parse_if_match(lines: Sequence[str]) -> IfMatch | None:
    """The `If-Match` field from its field lines, or None without one; a malformed field
    is a 422. Several lines are one comma-separated list (RFC 9110 §5.3): FastAPI's
    header parameter is the first line alone, so `"9"` then `"2"` was a 412 at version 2."""
    if not lines:
        return None
    text = ", ".join(lines).strip(" \t")
    if text == "*":
        return IfMatch(versions=None)
    versions: set[int] = set()
    tags = 0
    pos = 0
    while pos < len(text):
        member = _MEMBER.match(text, pos)
        if member is None or member.end() == pos:
            raise _malformed()
        weak, opaque = member.groups()
        if opaque is not None:
            tags += 1
            if not weak and _VERSION.fullmatch(opaque):
                versions.add(int(opaque))
        pos = member.end()
    if not tags:
        raise _malformed()
    return IfMatch(versions=frozenset(versions))


def _malformed() -> InvalidRequest:
    return InvalidRequest(
        'If-Match must be "*" or a comma-separated list of entity tags such as "3" (the '
        "conversation's ETag).",
        errors=[{"loc": ["header", "If-Match"], "msg": 'expected "*" or entity tags like "3"'}],
    )
