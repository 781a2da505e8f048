from __future__ import annotations

import pytest

from app.media.dimensions import image_dimensions
from app.media.sniff import kind_of, sniff
from tests import media_samples as s


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (s.png(), "image/png"),
        (s.jpeg(), "image/jpeg"),
        (s.gif(), "image/gif"),
        (s.webp_vp8x(), "image/webp"),
        (s.wav(0.01), "audio/wav"),
        (s.pdf(), "application/pdf"),
        (s.exe(), "application/x-msdownload"),
        (s.mp4(), "video/mp4"),
        (b"ID3\x04\x00" + b"\x00" * 100, "audio/mpeg"),
        (b"OggS\x00\x02" + b"\x00" * 22 + b"OpusHead", "audio/opus"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"PK\x03\x04rest", "application/zip"),
        (b"hello world\n", "text/plain"),
        ("caf\u00e9 \u2603".encode(), "text/plain"),
        (b'{"a": 1}', "application/json"),
        (b"  <!DOCTYPE html><html>", "text/html"),
        (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        (b"<svg onload=alert(1)>", "image/svg+xml"),
        (b"\x00\x01\x02binary", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_sniff(data: bytes, mime: str) -> None:
    assert sniff(data) == mime


def test_a_cut_multibyte_character_is_still_text() -> None:
    assert sniff("x\u2603".encode()[:-1]) == "text/plain"


def test_kinds() -> None:
    assert kind_of("image/png") == "image"
    assert kind_of("audio/wav") == "audio"
    assert kind_of("video/mp4") == "video"
    assert kind_of("application/pdf") == "document"
    assert kind_of("application/x-msdownload") == "file"


@pytest.mark.parametrize(
    ("mime", "data", "dims"),
    [
        ("image/png", s.png(17, 9), (17, 9)),
        ("image/jpeg", s.jpeg(800, 600), (800, 600)),
        ("image/jpeg", s.jpeg(1024, 768, exif_bytes=60_000), (1024, 768)),
        ("image/gif", s.gif(31, 7), (31, 7)),
        ("image/webp", s.webp_vp8x(4000, 3000), (4000, 3000)),
    ],
)
def test_dimensions(mime: str, data: bytes, dims: tuple[int, int]) -> None:
    assert image_dimensions(mime, data) == dims


@pytest.mark.parametrize(
    ("mime", "data"),
    [
        ("image/png", b"\x89PNG\r\n\x1a\n"),
        ("image/jpeg", b"\xff\xd8\xff\xe0"),
        ("image/gif", b"GIF"),
    ],
)
def test_truncated_headers_have_no_dimensions(mime: str, data: bytes) -> None:
    assert image_dimensions(mime, data) is None
