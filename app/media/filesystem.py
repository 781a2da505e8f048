"""`FilesystemMediaStore`: blobs as files under `PARLEY_MEDIA_DIR`.

Layout (no client string anywhere; an operator finds a conversation's files through its
media references in the state store, each naming a sha256, and `locate(sha256)`):

    <root>/blobs/<sha[0:2]>/<sha[2:4]>/<sha256>   the bytes, read-only once published
    <root>/staging/<random>.part                  uploads in progress
    <root>/trash/<sha256>.<random>                blobs being deleted (see MediaStore)

Publishing is a hard link from the staging file (so the staging copy survives until
`close`), preceded by an fsync of the file and followed by an fsync of the directory: a
blob path that exists always holds the complete bytes, also after a power loss. All file
operations run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO

from app.media.base import (
    CHUNK_BYTES,
    HEAD_BYTES,
    BlobInfo,
    BlobTooLarge,
    MediaStore,
    StagedBlob,
    check_sha256,
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link(src: Path, dst: Path) -> bool:
    """Hard-link `src` at `dst` (creating parents); False if `dst` already exists."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    _fsync_dir(dst.parent)
    return True


def _debris_time(sub: str, entry: os.DirEntry[str]) -> float:
    """When a staging file was last written, or when a trash file was moved there."""
    if sub == "trash":
        with contextlib.suppress(ValueError, IndexError):
            return int(entry.name.split(".")[1]) / 1e9
    return entry.stat().st_mtime


class _FileStaged(StagedBlob):
    def __init__(self, store: FilesystemMediaStore, max_bytes: int) -> None:
        self._store = store
        self._max = max_bytes
        self._path = store.root / "staging" / f"{uuid.uuid4().hex}.part"
        self._file: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._head = bytearray()
        self._info: BlobInfo | None = None
        self._published = False
        self._closed = False

    def _append(self, chunk: bytes) -> None:
        if self._file is None:
            self._file = self._path.open("xb")
        self._file.write(chunk)
        self._hash.update(chunk)

    async def write(self, chunk: bytes) -> None:
        if self._info is not None or self._closed:
            raise RuntimeError("write after finish")
        if not chunk:
            return
        self._size += len(chunk)
        if self._size > self._max:
            raise BlobTooLarge(f"more than {self._max} bytes")
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]
        await asyncio.to_thread(self._append, chunk)

    def _seal(self) -> str:
        if self._file is None:
            self._file = self._path.open("xb")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._hash.hexdigest()

    async def finish(self) -> BlobInfo:
        if self._info is None:
            digest = await asyncio.to_thread(self._seal)
            self._info = BlobInfo(sha256=digest, size_bytes=self._size, head=bytes(self._head))
        return self._info

    def _publish(self, target: Path) -> None:
        if not _link(self._path, target):
            os.utime(target)  # a fresh publication: the orphan sweep waits again

    async def publish(self) -> None:
        info = await self.finish()
        await asyncio.to_thread(self._publish, self._store.blob_path(info.sha256))
        self._published = True

    def _close(self, restore: Path | None) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if restore is not None and not restore.exists():
            _link(self._path, restore)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def close(self, *, keep: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        restore = None
        if keep and self._published and self._info is not None:
            restore = self._store.blob_path(self._info.sha256)
        await asyncio.shield(asyncio.to_thread(self._close, restore))


class FilesystemMediaStore(MediaStore):
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"FilesystemMediaStore({str(self.root)!r})"

    def _mkdirs(self) -> None:
        for sub in ("blobs", "staging", "trash"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    async def open(self) -> None:
        await asyncio.to_thread(self._mkdirs)

    def blob_path(self, sha256: str) -> Path:
        sha = check_sha256(sha256)
        return self.root / "blobs" / sha[:2] / sha[2:4] / sha

    def locate(self, sha256: str) -> str:
        return str(self.blob_path(sha256))

    def stage(self, *, max_bytes: int) -> StagedBlob:
        return _FileStaged(self, max_bytes)

    async def size(self, sha256: str) -> int | None:
        path = self.blob_path(sha256)
        try:
            return (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            return None

    async def read(
        self, sha256: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self.blob_path(sha256)
        f = await asyncio.to_thread(path.open, "rb")
        try:
            await asyncio.to_thread(f.seek, start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                want = CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining)
                chunk = await asyncio.to_thread(f.read, want)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.shield(asyncio.to_thread(f.close))

    async def delete_if_unused(self, sha256: str, in_use: Callable[[], Awaitable[bool]]) -> bool:
        path = self.blob_path(sha256)
        if await in_use():
            return False
        # The name carries the time, so the debris sweep never takes a trash file that a
        # deletion is still re-checking (a rename keeps the blob's old mtime).
        trash = self.root / "trash" / f"{sha256}.{time.time_ns()}.{uuid.uuid4().hex[:8]}"
        try:
            await asyncio.to_thread(os.rename, path, trash)
        except FileNotFoundError:
            return False
        try:
            still_used = await in_use()
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._restore, trash, path))
            raise
        if still_used:
            await asyncio.to_thread(self._restore, trash, path)
            return False
        await asyncio.to_thread(trash.unlink)
        return True

    @staticmethod
    def _restore(trash: Path, path: Path) -> None:
        _link(trash, path)
        trash.unlink()

    def _old_blobs(self, shard: Path, cutoff: float) -> list[str]:
        found = []
        for sub in shard.iterdir():
            for entry in os.scandir(sub):
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    found.append(entry.name)
        return found

    async def list_blobs(self, *, older_than_s: float) -> AsyncIterator[str]:
        cutoff = time.time() - older_than_s
        blobs = self.root / "blobs"
        shards = await asyncio.to_thread(lambda: sorted(p for p in blobs.iterdir() if p.is_dir()))
        for shard in shards:
            for name in await asyncio.to_thread(self._old_blobs, shard, cutoff):
                with contextlib.suppress(ValueError):
                    yield check_sha256(name)

    def _sweep(self, cutoff: float) -> int:
        removed = 0
        for sub in ("staging", "trash"):
            for entry in os.scandir(self.root / sub):
                with contextlib.suppress(FileNotFoundError):
                    if _debris_time(sub, entry) < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    async def sweep_staging(self, *, older_than_s: float) -> int:
        return await asyncio.to_thread(self._sweep, time.time() - older_than_s)
