"""`If-Match` (RFC 9110 §13.1.1) against a conversation, whose ETag is the strong tag
`"<version>.<incarnation>"` (`app.domain.incarnation.entity_tag`); and `If-None-Match`
(§13.1.2) against a media ETag.

The field is `*` (any current version) or a comma-separated list of entity tags; it holds
if any listed tag matches by the strong comparison: a weak tag (`W/"3.…"`) never matches, and
opaque tags compare character by character (`"03"` is not `"3"`). A bare `"<version>"`
(the ETag before incarnations were in it, and what a client builds from `version`) is
still accepted for the current version: it cannot tell a conversation created again under
a deleted one's id from the deleted one, the full ETag can. A well-formed tag that is no
tag of ours matches nothing (412); only a field that is not that grammar is a 422.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.domain.conversation import Conversation
from app.domain.incarnation import entity_tag
from app.errors import InvalidRequest, PreconditionFailed

# One list member (an entity-tag, or nothing: RFC 9110 §5.6.1 empty elements) and what
# ends it. etagc is %x21 / %x23-7E / obs-text: a comma may be inside a tag. The space runs
# are possessive (`*+`): with plain `*` the two runs around the optional tag split a run
# of spaces every possible way before failing, O(n^2) in its length (a 60,000-space
# header line held the event loop 18 s; review R1).
_MEMBER = re.compile(r'[ \t]*+(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*+(?:,|\Z)')
# What a tag of ours can be: `str(version)` (< 2**63), with or without the incarnation;
# other tags match nothing and are not kept (nor quoted back in a 412).
_OURS = re.compile(r"(?:0|[1-9][0-9]{0,18})(?:\.[0-9a-f]{12})?")


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A parsed `If-Match`: `tags` None for `*`, else the strong tags it lists that could
    be ours (possibly none: then it holds for no conversation)."""

    tags: frozenset[str] | None

    def holds(self, conversation: Conversation) -> bool:
        """Whether the field holds for the current `conversation`: `*`, its ETag, or its
        bare version."""
        if self.tags is None:
            return True
        return entity_tag(conversation) in self.tags or str(conversation.version) in self.tags

    def require(self, conversation: Conversation) -> None:
        """412 `precondition_failed` unless the field holds for `conversation`."""
        if not self.holds(conversation):
            raise PreconditionFailed(
                f'If-Match {self} does not match the current ETag "{entity_tag(conversation)}" '
                f"(version {conversation.version}).",
                extra={"version": conversation.version},
            )

    def __str__(self) -> str:
        if self.tags is None:
            return "*"
        return ", ".join(f'"{t}"' for t in sorted(self.tags)) or "(no tag of ours)"


def parse_if_match(lines: Sequence[str]) -> IfMatch | None:
    """The `If-Match` field from its field lines, or None without one; a malformed field
    is a 422. Several lines are one comma-separated list (RFC 9110 §5.3): FastAPI's
    header parameter is the first line alone, so `"9"` then `"2"` was a 412 at version 2."""
    if not lines:
        return None
    tags = entity_tags(lines, "If-Match")
    if tags is None:
        return IfMatch(tags=None)
    return IfMatch(tags=frozenset(tag for weak, tag in tags if not weak and _OURS.fullmatch(tag)))


def none_match(lines: Sequence[str], opaque: str) -> bool:
    """Whether an `If-None-Match` field (its lines; none: False) lists the representation
    whose ETag is the strong `"<opaque>"`: `*`, or any tag by the weak comparison (RFC 9110
    §13.1.2; `W/"x"` matches, as a cache that weakened the tag sends it back)."""
    if not lines:
        return False
    tags = entity_tags(lines, "If-None-Match")
    return tags is None or any(tag == opaque for _, tag in tags)


def entity_tags(lines: Sequence[str], header: str) -> list[tuple[bool, str]] | None:
    """The (weak, opaque-tag) members of a `*` / `#entity-tag` field, None for `*`; a
    field outside that grammar (or with no tag) is a 422 naming `header`."""
    text = ", ".join(lines).strip(" \t")
    if text == "*":
        return None
    tags: list[tuple[bool, str]] = []
    pos = 0
    while pos < len(text):
        member = _MEMBER.match(text, pos)
        if member is None or member.end() == pos:
            raise _malformed(header)
        weak, opaque = member.groups()
        if opaque is not None:
            tags.append((bool(weak), opaque))
        pos = member.end()
    if not tags:
        raise _malformed(header)
    return tags


def _malformed(header: str) -> InvalidRequest:
    return InvalidRequest(
        f'{header} must be "*" or a comma-separated list of entity tags such as "3" (an '
        "ETag this service sent).",
        errors=[{"loc": ["header", header], "msg": 'expected "*" or entity tags like "3"'}],
    )
