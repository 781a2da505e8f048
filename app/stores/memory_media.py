"""Media records and the references stored messages hold to them, for `app.stores.memory`.

Plain synchronous methods: `MemoryStore` calls them without awaiting in between, which is
what keeps each of its calls atomic on one event loop. A record with a reference is never
collected; references change only with the messages that hold them (`add_refs` when they
are appended, `drop_refs` when they are reclaimed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.domain import Message
from app.domain.media import MediaRecord
from app.errors import Conflict
from app.stores.base import media_references


class MemoryMedia:
    def __init__(self) -> None:
        self._records: dict[str, MediaRecord] = {}
        self._by_owner: dict[tuple[str, str], str] = {}  # (user, sha256) -> id
        # media id -> {(lineage id, message id)} of the stored messages referencing it
        self._refs: dict[str, set[tuple[str, str]]] = {}

    def save(self, record: MediaRecord) -> MediaRecord:
        existing = self._by_owner.get((record.user_id, record.sha256))
        if existing is not None:
            return self._records[existing].model_copy()
        if record.id in self._records:
            raise Conflict(f"Media {record.id!r} already exists.")
        self._records[record.id] = record.model_copy()
        self._by_owner[(record.user_id, record.sha256)] = record.id
        return record.model_copy()

    def get(self, media_id: str) -> MediaRecord | None:
        found = self._records.get(media_id)
        return found.model_copy() if found is not None else None

    def exists(self, media_id: str) -> bool:
        return media_id in self._records

    def mark_attached(self, media_ids: Sequence[str], *, retain: bool) -> None:
        for media_id in media_ids:
            found = self._records.get(media_id)
            if found is not None:
                self._records[media_id] = found.model_copy(
                    update={"attached": True, "retain": found.retain or retain}
                )

    def in_use(self, sha256: str) -> bool:
        return any(r.sha256 == sha256 for r in self._records.values())

    def lineage_ids(self, lineage_id: str) -> list[str]:
        return sorted(
            media_id
            for media_id, holders in self._refs.items()
            if any(lineage == lineage_id for lineage, _ in holders)
        )

    def lineage_ref_count(self, lineage_id: str) -> int:
        return sum(1 for held in self._refs.values() for lid, _ in held if lid == lineage_id)

    def collect(self, media_ids: Sequence[str], *, force: bool) -> list[MediaRecord]:
        deleted = []
        for media_id in dict.fromkeys(media_ids):
            found = self._records.get(media_id)
            if found is None or self._refs.get(media_id):
                continue
            if not force and (not found.attached or found.retain):
                continue
            del self._records[media_id]
            self._by_owner.pop((found.user_id, found.sha256), None)
            deleted.append(found)
        return deleted

    def user_ids(self, user_id: str) -> list[str]:
        return sorted(r.id for r in self._records.values() if r.user_id == user_id)

    def collectable_ids(self, *, limit: int) -> list[str]:
        found = (
            r.id
            for r in self._records.values()
            if r.attached and not r.retain and not self._refs.get(r.id)
        )
        return [media_id for _, media_id in zip(range(limit), found, strict=False)]

    def add_refs(self, lineage_id: str, refs: Iterable[tuple[str, str]]) -> None:
        """`refs`: (message id, media id) pairs of messages just stored in `lineage_id`."""
        for message_id, media_id in refs:
            self._refs.setdefault(media_id, set()).add((lineage_id, message_id))

    def drop_refs(self, lineage_id: str, messages: Iterable[Message]) -> None:
        for message_id, media_id in media_references(list(messages)):
            holders = self._refs.get(media_id)
            if holders is not None:
                holders.discard((lineage_id, message_id))
                if not holders:
                    del self._refs[media_id]
