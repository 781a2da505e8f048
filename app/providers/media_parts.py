"""Provider-neutral views of a resolved media part (shared by the adapters)."""

from __future__ import annotations

import base64
import binascii

from app.domain import Part
from app.media.sniff import kind_of

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT_DOCUMENTS = frozenset({"text/plain", "application/json"})


def part_kind(part: Part) -> str:
    """The media kind a part is sent as: its sniffed type's kind, else its declared type."""
    mime = part.media.mime_type if part.media else None
    if mime:
        kind = kind_of(mime)
        if kind != "file":
            return kind
    return part.type


def data_url(part: Part) -> str | None:
    media = part.media
    if media is None or media.base64 is None:
        return None
    return f"data:{media.mime_type or 'application/octet-stream'};base64,{media.base64}"


def document_text(part: Part) -> str:
    """The text of a text document part (its bytes decoded as UTF-8)."""
    media = part.media
    if media is None or media.base64 is None:
        return ""
    try:
        return base64.b64decode(media.base64).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return ""


def document_name(part: Part, extension: str) -> str:
    media = part.media
    if media is not None and media.filename:
        return media.filename
    stem = (media.media_id if media is not None else None) or "document"
    return f"{stem}.{extension}"
