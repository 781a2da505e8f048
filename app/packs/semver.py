"""Semantic Versioning 2.0.0 parsing and precedence (https://semver.org, §11).

PromptPack versions may carry a leading `v` (`v1.2.3`); it is tolerated and dropped from the
canonical form. Build metadata (`+build.5`) is kept in the canonical string, so two builds of
one version are different versions, but it is ignored for precedence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The official schema's pattern, written for ECMA-262 semantics: `[0-9]` instead of `\d` (which
# in Python also matches non-ASCII digits) and `\Z` instead of `$` (which in Python also
# matches before a trailing newline).
_IDENT = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
SEMVER_PATTERN = (
    r"^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    rf"(?:-({_IDENT}(?:\.{_IDENT})*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z"
)
_SEMVER_RE = re.compile(SEMVER_PATTERN)

# One pre-release identifier as a sortable tuple: numeric identifiers sort before
# alphanumeric ones; numerics by value, alphanumerics by ASCII order (§11.4).
_IdentKey = tuple[int, int, str]


@dataclass(frozen=True)
class SemVer:
    """A parsed version. Compare with `precedence`, not with `==` (which includes build)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse `text` (optionally `v`-prefixed); `ValueError` if it is not SemVer 2.0.0."""
        match = _SEMVER_RE.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        major, minor, patch, pre, build = match.groups()
        return cls(
            major=int(major),
            minor=int(minor),
            patch=int(patch),
            prerelease=tuple(pre.split(".")) if pre else (),
            build=tuple(build.split(".")) if build else (),
        )

    @property
    def precedence(self) -> tuple[int, int, int, tuple[int, ...], tuple[_IdentKey, ...]]:
        """Sort key implementing SemVer precedence; build metadata plays no part.

        A release ranks above every pre-release of the same MAJOR.MINOR.PATCH, and a longer
        pre-release ranks above a shorter one it starts with (`1.0.0-a < 1.0.0-a.1`).
        """
        release_rank = (1,) if not self.prerelease else (0,)
        idents = tuple(_ident_key(part) for part in self.prerelease)
        return (self.major, self.minor, self.patch, release_rank, idents)

    @property
    def sort_key(self) -> tuple[object, ...]:
        """`precedence`, then build metadata as a deterministic tie-breaker."""
        return (self.precedence, self.build)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


def _ident_key(part: str) -> _IdentKey:
    if part.isascii() and part.isdigit():
        return (0, int(part), "")
    return (1, 0, part)


def canonical_version(text: str) -> str:
    """`text` without its `v` prefix, e.g. for registry keys; `ValueError` if not SemVer."""
    return str(SemVer.parse(text))
