"""Is this media part acceptable? The prompt's `media` config, the service limits and the
provider, checked before anything is stored or sent (DESIGN §13).

Rules, in order (the first violation is reported, naming the part):
* the bytes' sniffed kind must match the part's `type` (`file` takes any recognised
  media kind); unknown binaries (executables, archives, octet streams) are refused;
* `PARLEY_MEDIA_MAX_MB` per part -> 413 `media_too_large`;
* the prompt's `media` section, when present: `enabled: false` refuses every media part;
  `supported_types` lists the kinds taken; per kind, `max_size_mb` (413),
  `allowed_formats` (names as in the schema: png, jpeg/jpg, mp3, wav, pdf, ...),
  `max_images_per_msg` and `require_caption` for images. A prompt without a `media`
  section takes any kind within the service limits;
* the conversation's provider must take that kind from that source (bytes or URL).
Violations are 422 `unsupported_media` unless noted.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from app.errors import MediaTooLarge, UnsupportedMedia
from app.media.sniff import FORMAT_NAMES
from app.packs.media import MediaConfig
from app.providers.base import LLMProvider

MB = 1024 * 1024


@dataclass(frozen=True)
class PartFacts:
    """What is known about one media part of a message."""

    index: int  # position in the message's parts
    declared: str  # the part's `type`
    kind: str  # from the sniffed MIME type (or the declared type for URLs)
    mime_type: str
    size_bytes: int | None  # None for URLs
    source: str  # "bytes" | "url"
    caption: str | None = None

    @property
    def loc(self) -> list[str | int]:
        return ["body", "parts", self.index]


def _refuse(facts: PartFacts, msg: str) -> UnsupportedMedia:
    return UnsupportedMedia(
        f"Part {facts.index}: {msg}", errors=[{"loc": [*facts.loc, "media"], "msg": msg}]
    )


def _too_large(facts: PartFacts, limit_mb: float, whose: str) -> MediaTooLarge:
    msg = f"{facts.size_bytes} bytes is over the {whose} limit of {limit_mb:g} MB"
    return MediaTooLarge(
        f"Part {facts.index}: {msg}", errors=[{"loc": [*facts.loc, "media"], "msg": msg}]
    )


def check_kind(facts: PartFacts) -> None:
    if facts.kind == "file":
        raise _refuse(facts, f"{facts.mime_type} is not a media type this service accepts")
    if facts.declared not in ("file", facts.kind):
        raise _refuse(
            facts, f"the bytes are {facts.mime_type} ({facts.kind}), not {facts.declared}"
        )


def check_service_limit(facts: PartFacts, max_mb: int) -> None:
    if facts.size_bytes is not None and facts.size_bytes > max_mb * MB:
        raise _too_large(facts, max_mb, "service")


def check_prompt(facts: PartFacts, config: MediaConfig | None, images_in_message: int) -> None:
    if config is None:
        return
    if not config.enabled:
        raise _refuse(facts, "this prompt does not accept media")
    if config.supported_types is not None and facts.kind not in config.supported_types:
        raise _refuse(
            facts, f"this prompt accepts {', '.join(config.supported_types) or 'no media'}"
        )
    per_kind = getattr(config, facts.kind, None) if facts.kind != "file" else None
    if per_kind is None:
        return
    max_mb = per_kind.max_size_mb
    if max_mb is not None and facts.size_bytes is not None and facts.size_bytes > max_mb * MB:
        raise _too_large(facts, per_kind.max_size_mb, f"prompt's {facts.kind}")
    allowed = per_kind.allowed_formats
    if allowed is not None and not set(FORMAT_NAMES.get(facts.mime_type, ())) & set(allowed):
        raise _refuse(facts, f"{facts.mime_type} is not among {', '.join(allowed)}")
    if facts.kind == "image":
        limit = getattr(per_kind, "max_images_per_msg", None)
        if limit is not None and images_in_message > limit:
            raise _refuse(facts, f"at most {limit} images per message")
        if getattr(per_kind, "require_caption", None) and not facts.caption:
            raise _refuse(facts, "this prompt requires a caption on images")


def check_provider(facts: PartFacts, provider: LLMProvider) -> None:
    reason = provider.media_support(facts.kind, facts.mime_type, facts.source)
    if reason is not None:
        raise _refuse(facts, reason)


URL_SCHEMES = frozenset({"http", "https"})


def http_url(url: str) -> bool:
    """Whether a media part's `url` is one a provider can fetch: http or https with a host,
    and no whitespace or control character anywhere (`urlsplit` strips leading blanks and
    takes `http:///path`; the URL is passed on exactly as sent, so both must be refused)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in 0-65535
        return parts.scheme.lower() in URL_SCHEMES and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket, a bad port
        return False
