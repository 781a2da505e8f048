"""Media token rules (app.domain.media_tokens) against the providers' published examples."""

from __future__ import annotations

import pytest

from app.domain import MediaRef
from app.domain.media_tokens import image_tokens, media_tokens


def img(w: int | None, h: int | None, detail: str | None = None) -> MediaRef:
    return MediaRef(mime_type="image/png", width=w, height=h, detail=detail)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("w", "h", "tokens"),
    [
        (1024, 1024, 765),  # OpenAI's example: 768 x 768 -> 4 tiles
        (2048, 4096, 1105),  # OpenAI's example: 1024x2048 -> 768x1536 -> 6 tiles
        (512, 512, 255),
        (100, 100, 255),
        (None, None, 1445),
    ],
)
def test_openai_rule(w: int | None, h: int | None, tokens: int) -> None:
    assert image_tokens(img(w, h), "openai") == tokens


def test_openai_low_detail_is_flat() -> None:
    assert image_tokens(img(4096, 4096, "low"), "openai") == 85


@pytest.mark.parametrize(
    ("w", "h", "tokens"),
    [
        (200, 200, 54),  # Anthropic's table: 200x200 ~ 54 tokens
        (1000, 1000, 1334),  # 1000x1000 ~ 1334
        (1092, 1092, 1590),  # 1092x1092 ~ 1590
        (4000, 4000, 1600),  # scaled down, capped
        (None, None, 1600),
    ],
)
def test_anthropic_rule(w: int | None, h: int | None, tokens: int) -> None:
    assert image_tokens(img(w, h), "anthropic") == tokens


def test_other_kinds_are_documented_estimates() -> None:
    assert media_tokens("audio", MediaRef(mime_type="audio/wav", size_bytes=320_000)) == 100
    assert media_tokens("audio", MediaRef(mime_type="audio/mpeg", size_bytes=160_000)) == 100
    assert media_tokens("video", MediaRef(mime_type="video/mp4", size_bytes=2_500_000)) == 2630
    assert (
        media_tokens("document", MediaRef(mime_type="application/pdf", size_bytes=150_000)) == 4000
    )
    assert media_tokens("document", MediaRef(mime_type="text/plain", size_bytes=400)) == 100
