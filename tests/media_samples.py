"""Real media files made in memory for tests (no fixtures on disk): a valid PNG of any size
(random pixels, so it does not compress), and headers of the other formats we sniff."""

from __future__ import annotations

import os
import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int = 4, height: int = 3, *, seed: bytes | None = None) -> bytes:
    """A decodable RGB PNG; with random pixels its size is about 3 * width * height."""
    row = 3 * width
    pixels = os.urandom(row * height) if seed is None else (seed * (row * height))[: row * height]
    raw = b"".join(b"\x00" + pixels[y * row : (y + 1) * row] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw, 1))
        + _chunk(b"IEND", b"")
    )


def png_of_size(size_bytes: int) -> bytes:
    """A random-pixel PNG of about `size_bytes` bytes (within a few hundred)."""
    side = max(1, int((size_bytes / 3) ** 0.5))
    return png(side, side)


def jpeg(width: int = 640, height: int = 480, *, exif_bytes: int = 0) -> bytes:
    """JFIF header, an optional APP1 segment, then a baseline SOF0 frame header."""
    out = (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", 16)
        + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    )
    if exif_bytes:
        out += b"\xff\xe1" + struct.pack(">H", exif_bytes + 2) + b"E" * exif_bytes
    out += b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00" * 3
    return out + b"\xff\xda" + os.urandom(64) + b"\xff\xd9"


def gif(width: int = 10, height: int = 20) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b";"


def webp_vp8x(width: int = 1000, height: int = 700) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    frames = int(seconds * rate)
    data = os.urandom(frames * 2)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n" + b"%" * 200 + b"\n%%EOF\n"


def exe() -> bytes:
    return b"MZ\x90\x00\x03\x00\x00\x00" + os.urandom(2000)


def mp4() -> bytes:
    return struct.pack(">I", 24) + b"ftypisom" + b"\x00\x00\x02\x00isomiso2" + os.urandom(500)


def text_pdf(pages: list[str]) -> bytes:
    """A valid PDF whose pages each hold one line of Helvetica text (correct xref
    offsets), for tests that read PDF text."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
