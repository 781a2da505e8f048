"""The MediaStore contract (app.media.base), against every backend."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from app.media import BlobTooLarge, MediaStore
from app.media.base import check_sha256


async def put(media: MediaStore, data: bytes, *, chunk: int = 7000) -> str:
    async with media.stage(max_bytes=len(data) + 1) as staged:
        for i in range(0, len(data), chunk):
            await staged.write(data[i : i + chunk])
        info = await staged.finish()
        await staged.publish()
    return info.sha256


async def blobs(media: MediaStore) -> list[str]:
    return [sha async for sha in media.list_blobs(older_than_s=-60)]


async def test_round_trip_is_content_addressed(media: MediaStore) -> None:
    data = os.urandom(300_000)
    sha = await put(media, data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert await media.size(sha) == len(data)
    assert await media.read_all(sha) == data


async def test_finish_reports_digest_size_and_head(media: MediaStore) -> None:
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(200_000)
    async with media.stage(max_bytes=10**6) as staged:
        await staged.write(data)
        info = await staged.finish()
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.size_bytes == len(data)
    assert data.startswith(info.head) and len(info.head) >= 4096


async def test_same_bytes_are_stored_once(media: MediaStore) -> None:
    data = os.urandom(50_000)
    first = await put(media, data)
    second = await put(media, data, chunk=999)
    assert first == second
    assert await blobs(media) == [first]


async def test_nothing_is_visible_before_publish(media: MediaStore) -> None:
    data = os.urandom(10_000)
    sha = hashlib.sha256(data).hexdigest()
    async with media.stage(max_bytes=10**6) as staged:
        await staged.write(data)
        await staged.finish()
        assert await media.size(sha) is None
        await staged.publish()
        assert await media.size(sha) == len(data)


async def test_an_error_before_publish_stores_nothing(media: MediaStore) -> None:
    data = os.urandom(10_000)
    with pytest.raises(RuntimeError):
        async with media.stage(max_bytes=10**6) as staged:
            await staged.write(data)
            await staged.finish()
            raise RuntimeError("validation failed")
    assert await blobs(media) == []
    assert await media.sweep_staging(older_than_s=-60) == 0  # no debris either


async def test_too_many_bytes_are_refused(media: MediaStore) -> None:
    with pytest.raises(BlobTooLarge):
        async with media.stage(max_bytes=100) as staged:
            await staged.write(b"x" * 60)
            await staged.write(b"x" * 60)
    assert await blobs(media) == []


async def test_empty_blob(media: MediaStore) -> None:
    sha = await put(media, b"")
    assert sha == hashlib.sha256(b"").hexdigest()
    assert await media.read_all(sha) == b""


async def test_ranges(media: MediaStore) -> None:
    data = os.urandom(200_000)
    sha = await put(media, data)
    got = b"".join([c async for c in media.read(sha, start=0, end=99)])
    assert got == data[:100]
    got = b"".join([c async for c in media.read(sha, start=150_000, end=None)])
    assert got == data[150_000:]
    got = b"".join([c async for c in media.read(sha, start=70_000, end=140_000)])
    assert got == data[70_000:140_001]


async def test_unknown_blob(media: MediaStore) -> None:
    sha = hashlib.sha256(b"never stored").hexdigest()
    assert await media.size(sha) is None
    with pytest.raises(FileNotFoundError):
        await media.read_all(sha)
    assert not await media.delete_if_unused(sha, _answer(False))


@pytest.mark.parametrize("name", ["../../etc/passwd", "ABC", "a" * 63, "g" * 64, "a" * 64 + "/"])
async def test_only_digests_name_blobs(media: MediaStore, name: str) -> None:
    with pytest.raises(ValueError):
        check_sha256(name)
    with pytest.raises(ValueError):
        await media.size(name)
    with pytest.raises(ValueError):
        media.locate(name)


def _answer(*values: bool):  # type: ignore[no-untyped-def]
    answers = list(values)

    async def in_use() -> bool:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return in_use


async def test_delete_if_unused(media: MediaStore) -> None:
    sha = await put(media, os.urandom(1000))
    assert not await media.delete_if_unused(sha, _answer(True))
    assert await media.size(sha) == 1000
    assert await media.delete_if_unused(sha, _answer(False))
    assert await media.size(sha) is None
    assert await blobs(media) == []


async def test_a_reference_recorded_during_deletion_keeps_the_blob(media: MediaStore) -> None:
    """`in_use` false on the first look, true on the re-check: the blob is put back."""
    data = os.urandom(1000)
    sha = await put(media, data)
    assert not await media.delete_if_unused(sha, _answer(False, True))
    assert await media.read_all(sha) == data


async def test_close_restores_a_blob_deleted_after_publish(media: MediaStore) -> None:
    """An upload of bytes a concurrent deletion is removing: once the upload's reference
    is recorded and close() returned, the blob is there."""
    data = os.urandom(5000)
    async with media.stage(max_bytes=10**6) as staged:
        await staged.write(data)
        info = await staged.finish()
        await staged.publish()
        # the deletion saw no reference (the upload's is not recorded yet)
        assert await media.delete_if_unused(info.sha256, _answer(False))
        # ... the upload now records its reference and closes
    assert await media.read_all(info.sha256) == data


async def test_concurrent_uploads_of_the_same_bytes(media: MediaStore) -> None:
    data = os.urandom(100_000)
    shas = await asyncio.gather(*(put(media, data, chunk=4096 * (i + 1)) for i in range(8)))
    assert len(set(shas)) == 1
    assert await media.read_all(shas[0]) == data
    assert await blobs(media) == [shas[0]]


async def test_list_blobs_honours_age(media: MediaStore) -> None:
    sha = await put(media, b"fresh")
    assert [s async for s in media.list_blobs(older_than_s=3600)] == []
    assert [s async for s in media.list_blobs(older_than_s=-1)] == [sha]


async def test_sweep_staging_removes_abandoned_uploads(media: MediaStore) -> None:
    staged = media.stage(max_bytes=10**6)
    await staged.write(b"abandoned by a crashed upload")
    assert await media.sweep_staging(older_than_s=3600) == 0
    assert await media.sweep_staging(older_than_s=-60) == 1
    await staged.close(keep=False)
    assert await blobs(media) == []


async def test_locate_names_the_digest(media: MediaStore) -> None:
    sha = await put(media, b"where am I")
    assert sha in media.locate(sha)
