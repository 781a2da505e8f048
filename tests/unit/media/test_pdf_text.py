"""The text of a PDF for context items (app/media/pdf_text.py)."""

from __future__ import annotations

from app.media.pdf_text import pdf_text
from tests.media_samples import text_pdf


def test_a_text_cut_short_by_the_limit_is_always_over_it_never_silently_truncated() -> None:
    # "aaaa\n\nbbbb" is exactly 10 characters; a third page follows. The caller refuses
    # only what is over its limit, so stopping at two pages must not look like a whole
    # document that fits.
    text = pdf_text(text_pdf(["aaaa", "bbbb", "cccc"]), max_chars=10)
    assert len(text) > 10


def test_a_document_that_fits_is_read_whole() -> None:
    assert pdf_text(text_pdf(["aaaa", "bbbb"]), max_chars=10) == "aaaa\n\nbbbb"


def test_nul_characters_of_a_pdf_text_layer_are_dropped() -> None:
    # content refuses NUL (PostgreSQL text cannot hold it; an export with one cannot be
    # imported): a PDF must not bring one in through media_id
    assert pdf_text(text_pdf(["abc\x00def"]), max_chars=100) == "abcdef"
