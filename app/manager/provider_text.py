"""What a provider streams, made storable before it is published or committed (review R10).

A provider's JSON may carry a lone UTF-16 surrogate (`"\\ud83d"`: an upstream or proxy that
escapes non-ASCII and cut an emoji's pair between two chunks) or a NUL. `json.loads`
accepts both; no store holds them and no UTF-8 writer encodes a lone surrogate, so left in,
the turn failed with 500 `internal_error`. Tool outputs already get U+FFFD for them
(`app.tools.limits.storable`); provider text gets the same, with one addition: a pair split
across two deltas is joined first (the high half is held until the next delta), so the
emoji survives.
"""

from __future__ import annotations

from app.domain import ToolCall
from app.tools.limits import storable
from app.unstorable import UNSTORABLE

_HIGH_FIRST, _HIGH_LAST = "\ud800", "\udbff"


def _clean(text: str) -> str:
    """Surrogate pairs joined into their code points; lone surrogates and NUL -> U+FFFD."""
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined.replace("\x00", "\ufffd")


class StreamedText:
    """The text deltas of one provider call, cleaned as they come (`feed`), with the high
    half of a pair that ended a delta held back for the next one (`flush` at the end)."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        if self._held:
            text, self._held = self._held + text, ""
        if not text or UNSTORABLE.search(text) is None:
            return text  # (every delta of a well-behaved provider: no copy)
        if _HIGH_FIRST <= text[-1] <= _HIGH_LAST:
            text, self._held = text[:-1], text[-1]
        return _clean(text)

    def flush(self) -> str:
        """What is still held at the end of the stream: a lone high half, as U+FFFD."""
        held, self._held = self._held, ""
        return "\ufffd" if held else ""


def storable_tool_call(call: ToolCall) -> ToolCall:
    """`call` with its id, name and arguments made storable (a copy only when needed)."""
    if UNSTORABLE.search(call.id + call.name) is None and not _unstorable(call.arguments):
        return call
    return call.model_copy(
        update={
            "id": storable(call.id),
            "name": storable(call.name),
            "arguments": storable(call.arguments),
        }
    )


def _unstorable(value: object) -> bool:
    if isinstance(value, str):
        return UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False
