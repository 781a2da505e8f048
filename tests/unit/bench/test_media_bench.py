"""Helpers of bench/media.py, and a tiny run against real uvicorn processes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.media.dimensions import image_dimensions
from app.media.sniff import sniff
from bench import media, media_report


def test_noise_png_is_a_valid_incompressible_png_of_the_size_asked() -> None:
    a = media.noise_png(300 * 1024, random.Random(1))
    b = media.noise_png(300 * 1024, random.Random(2))
    assert a != b  # unique per turn
    assert abs(len(a) - 300 * 1024) < 2000
    assert sniff(a) == "image/png"
    side = image_dimensions("image/png", a)
    assert side is not None and side[0] == side[1] and side[0] ** 2 <= len(a)
    import zlib

    assert len(zlib.compress(a, 6)) > 0.98 * len(a)


def test_sizes_of_a_store_on_disk(tmp_path: Path) -> None:
    db = tmp_path / "parley.db"
    db.write_bytes(b"x" * 10)
    (tmp_path / "parley.db-wal").write_bytes(b"x" * 5)
    assert media.sqlite_size(db) == 15
    blobs = tmp_path / "media" / "blobs" / "ab" / "cd"
    blobs.mkdir(parents=True)
    (blobs / "f").write_bytes(b"y" * 7)
    assert media.tree_size(tmp_path / "media") == 7
    assert media.tree_size(tmp_path / "absent") == 0


def test_reduction_in_words() -> None:
    assert media_report.reduction(10, 100) == 90.0
    assert media_report.reduction(130, 100) == -30.0
    assert media_report.reduction(None, 1) is None and media_report.reduction(1, 0) is None
    assert media_report.less_or_more(85.84) == "85.8 % less"
    assert media_report.less_or_more(-29.9) == "29.9 % more"
    assert media_report.less_or_more(None) == "-"


@pytest.mark.e2e
async def test_tiny_media_run_against_real_uvicorn(tmp_path: Path) -> None:
    params = media.parse_args(
        ["--images=3", "--uploads=1", "--upload-mb=1", f"--output={tmp_path / 'media.json'}"]
    )
    results = await media.run(params)
    modes = results["modes"]
    assert set(modes) == {name for name, _, _ in media.MODES}
    for name, m in modes.items():
        assert m["turns_failed"] == 0, m["errors_sample"]
        assert m["history_messages"] == 2 + 2 * 3  # the text turn, then the image turns
        assert m["rss_start_mb"] > 0 and m["db_mb"] > 0
        if name == "inline":
            assert m["blob_files"] == 0
        else:
            assert m["blob_files"] == 3 and m["media_dir_mb"] >= 0.8
    assert results["upload"]["files"] == 1 and results["upload"]["post_media_mb_s"] > 0
    table = media_report.render(results)
    assert "PromptKit claims" in table and "POST /media" in table
