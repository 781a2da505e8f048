"""Stored media in provider requests goes through the bounded encoded-media cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests import media_samples as samples
from tests.api.media_helpers import image_part, media_app


async def test_later_turns_reuse_the_encoded_image_and_still_carry_it(tmp_path: Path) -> None:
    png = samples.png_of_size(300_000)
    sha = hashlib.sha256(png).hexdigest()
    async with media_app(tmp_path, media_cache_mb=1) as app:
        cache = app.manager.media.encoded_cache
        conv = await app.conversation("alice")
        r = await app.send_parts("alice", conv["id"], [image_part(png)])
        assert r.status_code == 200, r.text
        assert f"sha256={sha}" in r.json()["reply"]["content"]
        assert cache.misses == 1 and len(cache) == 1
        for text in ("and now?", "still?"):
            r = await app.send_parts("alice", conv["id"], [{"type": "text", "text": text}])
            assert r.status_code == 200, r.text
        assert cache.hits == 2 and cache.misses == 1  # the window still holds the image
        # over the 1 MB budget: three more images of 300 KB push the first one out
        for _ in range(3):
            await app.send_parts("alice", conv["id"], [image_part(samples.png_of_size(300_000))])
        assert cache.size_bytes <= 1024 * 1024 and len(cache) == 2


async def test_cache_off_reads_every_time(tmp_path: Path) -> None:
    png = samples.png_of_size(200_000)
    async with media_app(tmp_path, media_cache_mb=0) as app:
        cache = app.manager.media.encoded_cache
        conv = await app.conversation("alice")
        await app.send_parts("alice", conv["id"], [image_part(png)])
        r = await app.send_parts("alice", conv["id"], [{"type": "text", "text": "again"}])
        assert r.status_code == 200, r.text
        assert len(cache) == 0 and cache.misses == 2


async def test_after_a_restart_stored_media_is_read_again_from_disk(tmp_path: Path) -> None:
    """The cache is memory only: a new process starts empty, reads the blob from the media
    dir, and the provider still gets the bytes."""
    png = samples.png_of_size(300_000)
    sha = hashlib.sha256(png).hexdigest()
    async with media_app(tmp_path) as app:
        conv = await app.conversation("alice")
        r = await app.send_parts("alice", conv["id"], [image_part(png)])
        media_id = r.json()["messages"][0]["parts"][0]["media"]["media_id"]
        assert media_id and app.blob_files()
    async with media_app(tmp_path) as app:
        cache = app.manager.media.encoded_cache
        assert len(cache) == 0
        r = await app.send_parts(
            "alice", conv["id"], [{"type": "image", "media": {"media_id": media_id}}]
        )
        assert r.status_code == 200, r.text
        assert f"sha256={sha}" in r.json()["reply"]["content"]
        assert cache.misses >= 1 and len(cache) == 1
