"""MIME types from the bytes themselves (the client's label is never trusted).

A small magic-number table of our own rather than a dependency: the types a chat service
has to tell apart are few, and each rule is a fixed signature at a fixed offset, so the
table is easy to audit and needs only the first `SNIFF_BYTES` of a file. Anything not
recognised is `application/octet-stream`; UTF-8 text without NUL bytes is `text/plain`
(or `text/html` / `image/svg+xml` / `application/json` when it starts like one), because
those are the types a browser would render, which matters for how `GET /media` serves them.

Rules (offset: bytes -> type):
  0: 89 50 4E 47 0D 0A 1A 0A -> image/png      0: FF D8 FF -> image/jpeg
  0: "GIF87a" | "GIF89a" -> image/gif          0: "RIFF", 8: "WEBP" -> image/webp
  0: "BM" + plausible header -> image/bmp      0: "%PDF-" -> application/pdf
  0: "RIFF", 8: "WAVE" -> audio/wav            0: "RIFF", 8: "AVI " -> video/x-msvideo
  0: "OggS" (+ "OpusHead" in the first page -> audio/opus) -> audio/ogg
  0: "fLaC" -> audio/flac                      0: "ID3" | MPEG frame sync FF Fx/Ex -> audio/mpeg
  0: FF F1 | FF F9 (ADTS) -> audio/aac
  4: "ftyp" + brand: "M4A " -> audio/mp4; "qt  " -> video/quicktime; else video/mp4
  0: 1A 45 DF A3 (EBML) + "webm" doctype -> video/webm, else video/x-matroska
  0: "MZ" -> application/x-msdownload          0: 7F "ELF" -> application/x-executable
  0: "PK" 03 04 -> application/zip             0: 1F 8B -> application/gzip
"""

from __future__ import annotations

SNIFF_BYTES = 4096
OCTET_STREAM = "application/octet-stream"

# Media kinds of message parts (DESIGN §13) and the MIME types each accepts.
KIND_BY_MIME: dict[str, str] = {
    "image/png": "image",
    "image/jpeg": "image",
    "image/gif": "image",
    "image/webp": "image",
    "image/bmp": "image",
    "image/svg+xml": "image",
    "audio/wav": "audio",
    "audio/mpeg": "audio",
    "audio/ogg": "audio",
    "audio/opus": "audio",
    "audio/flac": "audio",
    "audio/aac": "audio",
    "audio/mp4": "audio",
    "video/mp4": "video",
    "video/quicktime": "video",
    "video/webm": "video",
    "video/x-matroska": "video",
    "video/x-msvideo": "video",
    "application/pdf": "document",
    "text/plain": "document",
    "application/json": "document",
    "text/html": "document",
}

# The PromptPack `allowed_formats` names (schema enums) of each sniffed type.
FORMAT_NAMES: dict[str, tuple[str, ...]] = {
    "image/png": ("png",),
    "image/jpeg": ("jpeg", "jpg"),
    "image/gif": ("gif",),
    "image/webp": ("webp",),
    "image/bmp": ("bmp",),
    "audio/wav": ("wav",),
    "audio/mpeg": ("mp3",),
    "audio/ogg": ("ogg",),
    "audio/opus": ("opus", "ogg"),
    "audio/flac": ("flac",),
    "audio/aac": ("aac",),
    "audio/mp4": ("m4a",),
    "video/mp4": ("mp4",),
    "video/quicktime": ("mov",),
    "video/webm": ("webm",),
    "video/x-matroska": ("mkv",),
    "video/x-msvideo": ("avi",),
    "application/pdf": ("pdf",),
    "text/plain": ("txt", "text"),
    "application/json": ("json",),
    "text/html": ("html",),
    "image/svg+xml": ("svg",),
}

# Types a browser would execute or render as a page: always served as attachments.
ACTIVE_CONTENT = frozenset({"text/html", "image/svg+xml", "application/xhtml+xml"})


def sniff(head: bytes) -> str:
    """The MIME type of a file whose first bytes are `head` (at least `SNIFF_BYTES` of
    them when the file is that long)."""
    binary = _binary(head)
    if binary is not None:
        return binary
    return _text(head)


def _binary(b: bytes) -> str | None:
    if b.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if b.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if b[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if b.startswith(b"RIFF") and len(b) >= 12:
        riff = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
        found = riff.get(b[8:12])
        if found:
            return found
    if b.startswith(b"%PDF-"):
        return "application/pdf"
    if b.startswith(b"OggS"):
        return "audio/opus" if b"OpusHead" in b[:512] else "audio/ogg"
    if b.startswith(b"fLaC"):
        return "audio/flac"
    if b.startswith(b"ID3"):
        return "audio/mpeg"
    if len(b) >= 2 and b[0] == 0xFF and b[1] in (0xF1, 0xF9):
        return "audio/aac"
    if len(b) >= 2 and b[0] == 0xFF and (b[1] & 0xE0) == 0xE0 and (b[1] & 0x06) != 0:
        return "audio/mpeg"  # MPEG audio frame sync with a layer set
    if len(b) >= 12 and b[4:8] == b"ftyp":
        brand = b[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        if brand == b"qt  ":
            return "video/quicktime"
        return "video/mp4"
    if b.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in b[:64] else "video/x-matroska"
    if b.startswith(b"BM") and len(b) >= 26 and b[6:10] == b"\x00\x00\x00\x00":
        return "image/bmp"
    if b.startswith(b"MZ"):
        return "application/x-msdownload"
    if b.startswith(b"\x7fELF"):
        return "application/x-executable"
    if b.startswith(b"PK\x03\x04"):
        return "application/zip"
    if b.startswith(b"\x1f\x8b"):
        return "application/gzip"
    return None


def _text(b: bytes) -> str:
    if not b or b"\x00" in b:
        return OCTET_STREAM
    try:
        text = b.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of `head` is still text.
        if exc.start < len(b) - 4:
            return OCTET_STREAM
        text = b[: exc.start].decode("utf-8")
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html", "<head", "<body", "<script", "<iframe")):
        return "text/html"
    if start.startswith("<svg") or (start.startswith("<?xml") and "<svg" in start):
        return "image/svg+xml"
    if start.startswith(("{", "[")):
        return "application/json"
    return "text/plain"


def kind_of(mime_type: str) -> str:
    """The part type a MIME type belongs to: image, audio, video, document, or file."""
    return KIND_BY_MIME.get(mime_type, "file")


def extension_of(mime_type: str) -> str:
    names = FORMAT_NAMES.get(mime_type)
    return names[0] if names else "bin"
