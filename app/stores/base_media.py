"""The media part of the `StateStore` contract (DESIGN §13), enforced by `tests/contract/`.

`MediaRecord`s are a user's handles on bytes in the media store
(at most one per user and sha256). Every committed message part carrying a `media_id`
is a *reference* to that record, stored atomically with the message by
`append_messages` (which refuses with `MediaNotFound`, storing nothing, if a record is
missing) and dropped atomically with the message when deletion reclaims it. A record
referenced by a stored message is never deleted, so a message never points at missing
media; `media_in_use(sha256)` is true while any record holds the bytes, which is what
protects a blob (see `app.media.base`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from app.domain.media import MediaRecord


class MediaRecords(ABC):
    """A store's media records and the references its messages hold to them."""

    @abstractmethod
    async def save_media(self, record: MediaRecord) -> MediaRecord:
        """Store `record`, unless its user already holds a record of the same `sha256`:
        then that one is returned unchanged (uploading the same bytes twice gives the same
        `media_id`). Returns the stored record."""

    @abstractmethod
    async def get_media(self, media_id: str) -> MediaRecord | None:
        """The record, or None."""

    @abstractmethod
    async def mark_media_attached(self, media_ids: Sequence[str], *, retain: bool) -> None:
        """Set `attached` on these records (after a commit referenced them), and `retain`
        when `retain` is true (`retain` is never cleared). Unknown ids are ignored."""

    @abstractmethod
    async def media_in_use(self, sha256: str) -> bool:
        """Whether any media record holds the bytes with this digest. A record saved before
        this call started is seen."""

    @abstractmethod
    async def lineage_media_ids(self, lineage_id: str) -> list[str]:
        """Distinct media ids referenced by stored messages of the lineage (what a deletion
        in it may leave unreferenced)."""

    @abstractmethod
    async def collect_media(
        self, media_ids: Sequence[str], *, force: bool = False
    ) -> list[MediaRecord]:
        """Delete each of these records that no stored message references and that is
        `attached` and not `retain` (with `force`: whatever its flags, for user erasure).
        A reference committed concurrently wins: the record then stays (or the append
        fails with `MediaNotFound`). Returns the deleted records."""

    @abstractmethod
    async def user_media_ids(self, user_id: str) -> list[str]:
        """Ids of every record of the user."""

    @abstractmethod
    async def collectable_media_ids(self, *, limit: int) -> list[str]:
        """Up to `limit` ids of attached, non-retained records that may have lost their
        last reference (the periodic media sweep passes them to `collect_media`). Ids
        still referenced may be returned; successive calls must visit every candidate
        eventually, so a record whose conversation expired is collected."""
