"""What Parley learns of a media part's bytes (`describe`: the sniffed type, size, hash and
image dimensions), the reference fields a kept part gets from it, and what a message's
media parts are checked against (`PartRules`), for `app.manager.media`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from app.domain import Part
from app.media.base import HEAD_BYTES, BlobInfo
from app.media.dimensions import image_dimensions
from app.media.sniff import kind_of, sniff
from app.packs.media import MediaConfig
from app.providers.base import LLMProvider


@dataclass(frozen=True)
class Sniffed:
    mime_type: str
    kind: str
    size_bytes: int
    sha256: str
    width: int | None
    height: int | None


def describe(info: BlobInfo) -> Sniffed:
    mime = sniff(info.head)
    dims = image_dimensions(mime, info.head)
    return Sniffed(
        mime_type=mime,
        kind=kind_of(mime),
        size_bytes=info.size_bytes,
        sha256=info.sha256,
        width=dims[0] if dims else None,
        height=dims[1] if dims else None,
    )


@dataclass
class PartRules:
    """What a message's media parts are checked against."""

    config: MediaConfig | None
    provider: LLMProvider
    max_mb: int


def decode_base64(text: str) -> bytes:
    cleaned = "".join(text.split())  # MIME-style line breaks are fine
    return base64.b64decode(cleaned, validate=True)


def info_of(data: bytes) -> BlobInfo:
    return BlobInfo(
        sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), head=data[:HEAD_BYTES]
    )


def with_default_detail(part: Part, config: MediaConfig | None) -> Part:
    """An image part without `detail` gets the prompt's `image.default_detail`."""
    default = config.image.default_detail if config and config.image else None
    if part.type != "image" or part.media is None or part.media.detail or default is None:
        return part
    return part.model_copy(update={"media": part.media.model_copy(update={"detail": default})})


def stored_fields(s: Sniffed) -> dict[str, object]:
    """The reference fields every kept media part gets."""
    return {
        "mime_type": s.mime_type,
        "size_bytes": s.size_bytes,
        "sha256": s.sha256,
        "width": s.width,
        "height": s.height,
    }
