"""The text of a PDF, for context items (`app.manager.context_items`). pypdf is pure
Python and CPU-bound, so callers run `pdf_text` in a worker thread; it stops reading pages
once `max_chars` characters are out, so a huge document costs no more than its first pages
that fit an item."""

from __future__ import annotations

import io
import logging

from pypdf import PdfReader
from pypdf.errors import PdfReadError

# pypdf logs every recoverable defect of a document at WARNING; a user's upload is not an
# operator's concern (set when first used, not at import).
_PYPDF_LOGGER = "pypdf"


class PdfTextError(ValueError):
    """The document cannot be read as a PDF, is encrypted, or has no text layer."""


def pdf_text(data: bytes, *, max_chars: int) -> str:
    """The text of every page, pages separated by a blank line, up to just past
    `max_chars` characters (the caller refuses what is over its limit)."""
    logging.getLogger(_PYPDF_LOGGER).setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise PdfTextError("the PDF is encrypted")
        pages: list[str] = []
        size = -2  # the joined length: a blank line between pages, none before the first
        for page in reader.pages:
            # NUL is refused in an item (PostgreSQL text cannot hold it): a PDF brings none
            text = (page.extract_text() or "").replace("\x00", "").strip()
            if text:
                pages.append(text)
                size += 2 + len(text)
            if size > max_chars:
                break
    except PdfTextError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise PdfTextError(f"the PDF cannot be read ({type(exc).__name__})") from exc
    if not pages:
        raise PdfTextError("the PDF has no text layer (a scan, say)")
    return "\n\n".join(pages)
