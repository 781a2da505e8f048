"""The size limit of what a tool returns to the model (`PARLEY_TOOL_MAX_RESULT_BYTES`).

An output is measured as the model receives it: a string by its UTF-8 bytes, anything else
as compact JSON. A larger output becomes a string — its first `limit` bytes (cut on a
character boundary) followed by a note saying it was truncated, so the model knows it saw
only part of the result.
"""

from __future__ import annotations

import json
from typing import Any

from app.unstorable import storable_text


def storable(value: Any) -> Any:
    """`value` with NUL and lone surrogates replaced by U+FFFD in every string (keys too).
    What a tool returns is not checked at the API boundary, yet no store can hold those
    characters and UTF-8 cannot encode a lone surrogate: left in, they would fail the turn."""
    if isinstance(value, TruncatedText):
        return TruncatedText(storable_text(value))
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


class TruncatedText(str):
    """Text an executor already cut to the limit (with its note): not cut again."""

    __slots__ = ()


def truncation_note(total: int | None, limit: int) -> str:
    size = f"{total} bytes" if total is not None else f"more than {limit} bytes"
    return (
        f"\n[truncated by Parley: the tool result was {size}; only the first {limit} bytes "
        "are shown]"
    )


def cap_output(output: Any, limit: int) -> tuple[Any, bool]:
    """`(output, False)` when it fits, else `(truncated text with a note, True)`."""
    if isinstance(output, TruncatedText):
        return str(output), True
    text = output if isinstance(output, str) else None
    if text is None:
        text = json.dumps(output, ensure_ascii=False, separators=(",", ":"), default=str)
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return output, False
    head = encoded[:limit].decode("utf-8", "ignore")
    return TruncatedText(head + truncation_note(len(encoded), limit)), True
