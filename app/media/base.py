"""The `MediaStore` ABC: where media bytes live (DESIGN §13).

Contract, shared by every backend and enforced by `tests/contract/media/`:

* **Content-addressed.** A blob is named by the sha256 of its bytes (64 lowercase hex
  digits) and nothing else: the same bytes are stored once, whoever sends them and however
  often. No client-supplied string (file name, conversation id, user id) ever becomes part
  of a storage location. Who may see a blob and which messages use it is recorded in the
  `StateStore` (media records and message references), not here.
* **Streamed.** Bytes go in through a `StagedBlob` chunk by chunk and come out through
  `read` chunk by chunk; no operation needs a whole blob in memory. Every file operation
  and all hashing run off the event loop.
* **Atomic.** A blob is either absent or complete: staging writes to a private temporary
  object, flushes it durably, then publishes it under its address in one step (a rename
  on a filesystem, a copy/commit on an object store). A crash leaves at most staging
  debris and unreferenced blobs, which `sweep_staging` and the media sweep reclaim.
* **Safe deletion.** `delete_if_unused(sha, in_use)` removes a blob only if `in_use()`
  is still false after the blob was moved out of its address; if it became true in the
  meantime the blob is put back. Together with `StagedBlob.close()`, which puts a
  published blob back if a concurrent deletion took it before the caller's reference was
  recorded, this guarantees: once the caller's reference is recorded and `close()` has
  returned, the blob stays until a deletion runs whose `in_use()` no longer sees that
  reference. The order callers follow is: stage, publish, record the reference, close.

A backend for an object store implements the same four steps (stage = upload to a
private key, publish = copy to the content key if absent, delete = move to a trash key
with the same re-check).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
HEAD_BYTES = 128 * 1024  # enough for sniffing and for a JPEG frame header behind EXIF
CHUNK_BYTES = 64 * 1024


def check_sha256(sha256: str) -> str:
    """`sha256` if it is a well-formed digest; ValueError otherwise (so nothing else can
    reach a storage location)."""
    if not SHA256_HEX.match(sha256):
        raise ValueError("not a sha256 hex digest")
    return sha256


@dataclass(frozen=True)
class BlobInfo:
    """What staging learned about the bytes: digest, size and the first `HEAD_BYTES`
    (for MIME sniffing and image dimensions)."""

    sha256: str
    size_bytes: int
    head: bytes


class BlobTooLarge(Exception):
    """More bytes were written to a `StagedBlob` than its `max_bytes`."""


class StagedBlob(ABC):
    """Bytes on their way into the store. Use as an async context manager:

    ```
    async with media.stage(max_bytes=n) as staged:
        await staged.write(chunk)          # any number of times
        info = await staged.finish()       # durable; digest known; nothing visible yet
        ...validate info...                # raising here stores nothing
        await staged.publish()             # the blob is at its address
        ...record the reference in the StateStore...
    # leaving the block: close(); on an exception before publish, nothing remains
    ```
    """

    async def __aenter__(self) -> StagedBlob:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close(keep=exc_type is None)

    @abstractmethod
    async def write(self, chunk: bytes) -> None:
        """Append bytes; raises `BlobTooLarge` past `max_bytes` (the staging copy is then
        discarded by `close`)."""

    @abstractmethod
    async def finish(self) -> BlobInfo:
        """No more bytes: make the staging copy durable and return its `BlobInfo`."""

    @abstractmethod
    async def publish(self) -> None:
        """Make the blob readable at its address (a no-op if the same bytes are already
        there). The staging copy is kept until `close`."""

    @abstractmethod
    async def close(self, *, keep: bool = True) -> None:
        """Drop the staging copy. If the blob was published and `keep` is true, first
        make sure it is still at its address (re-publishing it if a concurrent
        `delete_if_unused` removed it). Idempotent."""


class MediaStore(ABC):
    """Blob storage by sha256. Backends: `FilesystemMediaStore` (`PARLEY_MEDIA_DIR`)."""

    @abstractmethod
    async def open(self) -> None:
        """Prepare the store (create directories / check the bucket)."""

    @abstractmethod
    def stage(self, *, max_bytes: int) -> StagedBlob:
        """A new `StagedBlob` accepting at most `max_bytes` bytes."""

    @abstractmethod
    async def size(self, sha256: str) -> int | None:
        """The blob's size in bytes, or None if it is not stored."""

    @abstractmethod
    def read(self, sha256: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes `start` .. `end` (inclusive; None = to the end) of a blob, in chunks.
        Raises `FileNotFoundError` (on first iteration) if it is not stored."""

    async def read_all(self, sha256: str) -> bytes:
        """The whole blob, for a provider request that must embed it."""
        return b"".join([chunk async for chunk in self.read(sha256)])

    @abstractmethod
    async def delete_if_unused(self, sha256: str, in_use: Callable[[], Awaitable[bool]]) -> bool:
        """Delete the blob unless `in_use()` says it is referenced (see the module doc for
        the re-check that makes this safe against concurrent uploads). True if deleted."""

    @abstractmethod
    def list_blobs(self, *, older_than_s: float) -> AsyncIterator[str]:
        """Digests of stored blobs last published more than `older_than_s` ago (for the
        sweep that reclaims blobs no record references after a crash)."""

    @abstractmethod
    async def sweep_staging(self, *, older_than_s: float) -> int:
        """Remove staging and trash debris older than `older_than_s` (crashed uploads and
        deletions); return how many objects went."""

    @abstractmethod
    def locate(self, sha256: str) -> str:
        """Where an operator finds the blob (a path or an object key), for logs and the
        CLI; never used to read."""
