"""The characters no store holds: NUL (PostgreSQL `jsonb`/`text` refuse it) and lone UTF-16
surrogates (no backend encodes them as UTF-8). Text a client sends with them is refused
(`app.domain.limits.text_problem`, 422); text Parley did not get from a client (a provider's
reply or error message, a tool's output) cannot be refused, so it is made storable here.
A leaf module (no imports from `app`): the error hierarchy uses it too."""

from __future__ import annotations

import re

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> str:
    """`value` with NUL and lone surrogates replaced by U+FFFD (itself when it has none)."""
    return UNSTORABLE.sub("\ufffd", value) if UNSTORABLE.search(value) else value
