"""How many input tokens a media part costs, by the providers' published rules (for the
context budget, DESIGN §3). Pure functions of the stored reference (`MediaRef` carries
`width`/`height`, read from the image header at ingest, and `size_bytes`).

Images
  * `openai` (GPT-4o-class vision, "Images and vision" guide): `detail: low` costs 85.
    Otherwise the image is scaled to fit 2048 x 2048, then so that its shortest side is at
    most 768; it costs 85 + 170 per 512 x 512 tile.
  * `anthropic` (Claude vision guide): an image whose long edge exceeds 1568 px is scaled
    down to it; it costs width * height / 750, at most ~1600.
  Unknown dimensions count as the rule's maximum (openai: 8 tiles, 1445; anthropic 1600).

Everything else is an estimate, documented here because providers do not publish one
that depends only on the bytes:
  * audio: duration from the size at an assumed bitrate (WAV 32 kB/s, i.e. 16 kHz 16-bit
    mono; compressed formats 16 kB/s), at 10 tokens per second (GPT-4o audio input);
  * video: duration from the size at 250 kB/s, at 263 tokens per second (one frame per
    second plus audio, as Gemini counts it);
  * PDF: one page per 75 kB, 2000 tokens per page (Anthropic: 1500-3000 per page);
  * text documents: 4 bytes per token, like text parts;
  * anything else: 4 bytes per token.
"""

from __future__ import annotations

import math
from typing import Literal

from app.domain.messages import MediaRef

TokenRule = Literal["openai", "anthropic"]

_OPENAI_UNKNOWN = 85 + 170 * 8
_ANTHROPIC_MAX = 1600


def image_tokens(ref: MediaRef, rule: TokenRule) -> int:
    w, h = ref.width, ref.height
    if rule == "anthropic":
        if not w or not h:
            return _ANTHROPIC_MAX
        scale = min(1.0, 1568 / max(w, h))
        return min(_ANTHROPIC_MAX, math.ceil((w * scale) * (h * scale) / 750))
    if ref.detail == "low":
        return 85
    if not w or not h:
        return _OPENAI_UNKNOWN
    scale = min(1.0, 2048 / max(w, h))
    sw, sh = w * scale, h * scale
    scale = min(1.0, 768 / min(sw, sh))
    sw, sh = sw * scale, sh * scale
    return 85 + 170 * math.ceil(sw / 512) * math.ceil(sh / 512)


def media_tokens(kind: str, ref: MediaRef, rule: TokenRule = "openai") -> int:
    size = ref.size_bytes or 0
    mime = ref.mime_type or ""
    if kind == "image":
        return image_tokens(ref, rule)
    if kind == "audio":
        rate = 32_000 if mime == "audio/wav" else 16_000
        return math.ceil(size / rate * 10)
    if kind == "video":
        return math.ceil(size / 250_000 * 263)
    if mime == "application/pdf":
        return max(1, math.ceil(size / 75_000)) * 2000
    return math.ceil(size / 4)
