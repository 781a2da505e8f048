"""Image width and height from header bytes (PNG, JPEG, GIF, WebP, BMP), for token
accounting: providers price images by their pixel size. Only the first bytes are read
(JPEG may need a few kilobytes to reach its frame header); None when the header does not
say or is malformed."""

from __future__ import annotations

import struct

Dimensions = tuple[int, int]


def image_dimensions(mime_type: str, head: bytes) -> Dimensions | None:
    try:
        if mime_type == "image/png":
            return _png(head)
        if mime_type == "image/gif":
            return _gif(head)
        if mime_type == "image/webp":
            return _webp(head)
        if mime_type == "image/jpeg":
            return _jpeg(head)
        if mime_type == "image/bmp":
            return _bmp(head)
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _positive(w: int, h: int) -> Dimensions | None:
    return (w, h) if w > 0 and h > 0 else None


def _png(b: bytes) -> Dimensions | None:
    if b[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", b[16:24])
    return _positive(w, h)


def _gif(b: bytes) -> Dimensions | None:
    w, h = struct.unpack("<HH", b[6:10])
    return _positive(w, h)


def _webp(b: bytes) -> Dimensions | None:
    chunk = b[12:16]
    if chunk == b"VP8 ":  # lossy: frame header after a 3-byte tag and start code
        if b[23:26] != b"\x9d\x01\x2a":
            return None
        w, h = struct.unpack("<HH", b[26:30])
        return _positive(w & 0x3FFF, h & 0x3FFF)
    if chunk == b"VP8L":  # lossless: 14-bit fields after the 0x2f signature
        if b[20] != 0x2F:
            return None
        bits = int.from_bytes(b[21:25], "little")
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: 24-bit canvas size minus one
        w = int.from_bytes(b[24:27], "little") + 1
        h = int.from_bytes(b[27:30], "little") + 1
        return _positive(w, h)
    return None


# JPEG start-of-frame markers (baseline, progressive, ...) carry the size; not DHT/JPG/DAC.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(b: bytes) -> Dimensions | None:
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        (length,) = struct.unpack(">H", b[i + 2 : i + 4])
        if marker in _SOF:
            h, w = struct.unpack(">HH", b[i + 5 : i + 9])
            return _positive(w, h)
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        i += 2 + length
    return None


def _bmp(b: bytes) -> Dimensions | None:
    w, h = struct.unpack("<ii", b[18:26])
    return _positive(abs(w), abs(h))
