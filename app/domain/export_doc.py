"""The portable conversation document (DESIGN §6, export/import) and its checksum.

A document is one JSON object::

    {"format": "parley.conversation/v1", "conversation": Conversation,
     "head_message_id": str | null, "checkpoints": [Checkpoint...],
     "messages": [Message...], "summaries": [Summary...],
     "context_items": [ContextItem...], "checksum": "sha256:<hex>"}

`messages` holds every message reachable from the conversation (its current path, the
paths of its checkpoints and of its fork point, and every branch it wrote), in no
particular order: the export streams them as it reads them and the import orders them by
their parents. `summaries` are the lineage's summaries that cover one of those messages
(they come after the messages because only then is that set known). `context_items` are
the conversation's context items, oldest first; documents written before they existed lack
the member, which then reads as none.

The checksum is defined on values, not on the bytes a writer happened to produce, so any
JSON re-encoding of a document keeps it valid: with `canonical(v)` = the UTF-8 bytes of
`json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, it is the
SHA-256 of::

    canonical(format) "\\n" canonical(conversation) "\\n" canonical(head_message_id) "\\n"
    canonical(len(checkpoints)) "\\n" canonical(checkpoint) "\\n" ...  (each, in order)
    canonical(message) "\\n" ...                                          (each, in order)
    canonical(len(summaries)) "\\n" canonical(summary) "\\n" ...        (each, in order)
    canonical(len(context_items)) "\\n" canonical(item) "\\n" ...   (when the member is there)

(the counts make every boundary unambiguous: messages are objects, a count is a number).
It is hashed
as the document is written, so an export never holds the whole tree to compute it. It
guards against truncation and corruption, not tampering (anyone can recompute it).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from app.domain.checkpoint import Checkpoint
from app.domain.context_item import ContextItem
from app.domain.conversation import Conversation
from app.domain.messages import Message
from app.domain.model import DomainModel
from app.domain.summary import Summary

DOCUMENT_FORMAT = "parley.conversation/v1"
CHECKSUM_PREFIX = "sha256:"


def canonical(value: Any) -> bytes:
    """The canonical JSON bytes of a JSON value (what the checksum hashes)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


# The line breaks of `str.splitlines` (and httpx's line decoder) that canonical JSON writes
# raw: NEXT LINE, LINE and PARAGRAPH SEPARATOR, in UTF-8 (the C0 ones are escaped already)
_RAW_BREAKS = (
    ("\x85".encode(), b"\\u0085"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


class DocumentHasher:
    """Feeds a document's parts in document order; `checksum()` once everything is in."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def add(self, value: Any) -> bytes:
        """Hash one part's canonical bytes; return the bytes a writer emits for it: the
        same, with U+0085, U+2028 and U+2029 written as JSON escapes (the same JSON value,
        so the checksum, computed from parsed values, still holds). Readers that split
        lines at Unicode line breaks (Python's `str.splitlines`, httpx's `iter_lines`)
        would otherwise cut an NDJSON export's document in two (tester T2, review R2)."""
        data = canonical(value)
        self._sha.update(data)
        self._sha.update(b"\n")
        for raw, escaped in _RAW_BREAKS:
            if raw in data:
                data = data.replace(raw, escaped)
        return data

    def checksum(self) -> str:
        return CHECKSUM_PREFIX + self._sha.hexdigest()


def document_checksum(
    fmt: Any,
    conversation: Any,
    head: Any,
    checkpoints: list[Any],
    messages: list[Any],
    summaries: list[Any],
    context_items: list[Any] | None = None,
) -> str:
    """The checksum of a document's parts given as parsed JSON values (`context_items`
    None: a document without the member, which adds nothing to the hash)."""
    hasher = DocumentHasher()
    parts = (
        fmt, conversation, head, len(checkpoints), *checkpoints, *messages, len(summaries),
        *summaries,
    )  # fmt: skip
    if context_items is not None:
        parts = (*parts, len(context_items), *context_items)
    for part in parts:
        hasher.add(part)
    return hasher.checksum()


class ConversationDocument(DomainModel):
    """`GET /conversations/{id}/export` (one line of `GET /users/{id}/export`), and what
    `POST /conversations/import` takes back."""

    format: Literal["parley.conversation/v1"] = Field(
        description="The document format and version."
    )
    conversation: Conversation
    head_message_id: str | None = Field(description="The conversation's head when exported.")
    checkpoints: list[Checkpoint]
    messages: list[Message] = Field(
        description="Every message reachable from the conversation (path, checkpoints, fork "
        "point, branches it wrote), in no particular order; media parts keep their "
        "references as stored."
    )
    summaries: list[Summary] = Field(
        description="The lineage's summaries covering one of `messages` (context strategy "
        "`summarize`)."
    )
    context_items: list[ContextItem] = Field(
        default_factory=list,
        description="The conversation's context items, oldest first (absent in documents "
        "written before context items existed: none).",
    )
    checksum: str = Field(
        description="`sha256:<hex>` over the canonical JSON of the other members, in "
        "document order (README, Export and import)."
    )
