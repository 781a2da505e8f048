"""Regular expressions written by pack and tool authors, matched against values that come
from clients and models: compiled with RE2, whose matching time is linear in the value
whatever the pattern. Python's backtracking `re` takes exponential time on patterns such as
`(a+)+$` and holds the event loop (and the GIL) meanwhile: one request could freeze the
instance (outside tester T15). RE2's syntax is Go's regexp, the one PromptKit reads the same
packs with (no backreferences or lookaround)."""

from __future__ import annotations

import functools
from typing import Any

import re2

PatternError = re2.error

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is the caller's error to report, not a log line


@functools.lru_cache(maxsize=1024)
def author_pattern(pattern: str) -> Any:
    """`pattern` compiled with RE2 (`PatternError` if it is not one); `.search(text)`."""
    return re2.compile(pattern, _OPTIONS)


def pattern_error_text(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else exc
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
