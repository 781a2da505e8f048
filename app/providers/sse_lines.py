"""An incremental Server-Sent Events decoder that tolerates any chunking.

Provider streams arrive as arbitrary byte chunks: a chunk may end in the middle of a line, a
JSON document, a CRLF pair or a multi-byte UTF-8 character. `SSEDecoder.feed` accepts such
chunks and returns the events completed so far; `flush` ends the stream. Lines may end with
LF, CRLF or a lone CR (the WHATWG rules); `:` lines are comments; one leading space after
the field's colon is stripped. At end of stream, an event still being built is dispatched
(lenient: some servers omit the final blank line after `data: [DONE]`).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. `event` is `"message"` when the server named none."""

    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode one chunk; return the events it completes (possibly none)."""
        text = self._text.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        self._buffer += text
        return self._drain(final=False)

    def flush(self) -> list[SSEEvent]:
        """End of stream: process a last unterminated line and any event being built."""
        self._buffer += self._text.decode(b"", final=True)
        events = self._drain(final=True)
        if self._buffer:
            line, self._buffer = self._buffer, ""
            events.extend(self._line(line))
        events.extend(self._dispatch())
        return events

    def _drain(self, *, final: bool) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        buf = self._buffer
        start = 0
        while True:
            cr = buf.find("\r", start)
            lf = buf.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr != -1 and (lf == -1 or cr < lf):
                if cr == len(buf) - 1 and not final:
                    break  # a CR at the end may be the first half of CRLF: wait for more
                end = cr
                nxt = cr + 2 if buf.startswith("\n", cr + 1) else cr + 1
            else:
                end, nxt = lf, lf + 1
            events.extend(self._line(buf[start:end]))
            start = nxt
        self._buffer = buf[start:]
        return events

    def _line(self, line: str) -> list[SSEEvent]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return []
        name, sep, value = line.partition(":")
        if sep:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return []

    def _dispatch(self) -> list[SSEEvent]:
        if not self._data:
            self._event = ""
            return []
        event = SSEEvent(event=self._event or "message", data="\n".join(self._data), id=self._id)
        self._event = ""
        self._data = []
        return [event]
