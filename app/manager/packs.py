"""The packs a conversation can use: files from `PARLEY_PACKS_DIR` plus packs uploaded
through the API, which are persisted in the state store so they survive restarts and are
visible to every instance sharing the store.

"Latest" (a pack asked for without a version) agrees across instances within
`LATEST_CHECK_S`: before answering it, an instance compares the store's pack count (one
cheap read, at most once per `LATEST_CHECK_S`) with the count it last synced, and syncs on a
change. A named version it does not know is looked for in the store at once. Turns name
their conversation's version, so they never wait on this (outside tester T3: a version
uploaded on one instance was never "latest" on the others).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from app.domain.pagination import Page, decode_cursor, encode_cursor
from app.errors import PackExists, PackNotFound
from app.packs import PackRegistry, PackSummary, PromptPack, parse_pack
from app.stores.base import StateStore

log = logging.getLogger("parley.packs")

LATEST_CHECK_S = 1.0


def _canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class PackLibrary:
    def __init__(
        self,
        registry: PackRegistry,
        store: StateStore,
        *,
        latest_check_s: float = LATEST_CHECK_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self._store = store
        # Content hashes of stored documents already registered (or refused): a sync only
        # validates documents it has not seen, not every stored pack on every call.
        self._seen: set[str] = set()
        self._synced_count = -1  # stored documents the last sync read
        self._latest_check_s = latest_check_s
        self._monotonic = monotonic
        self._checked_at = -math.inf

    def __len__(self) -> int:
        return len(self.registry)

    async def sync(self) -> int:
        """Register stored uploads this instance has not seen yet; return how many."""
        added = 0
        documents = await self._store.list_packs()
        self._synced_count = len(documents)
        for document in documents:
            digest = hashlib.sha256(_canonical(document).encode()).hexdigest()
            if digest in self._seen:
                continue
            self._seen.add(digest)
            try:
                _, created = self.registry.add(document)
            except PackExists:
                log.warning(
                    "stored pack %s %s conflicts with a pack file of the same version; "
                    "the file wins on this instance",
                    document.get("id"),
                    document.get("version"),
                )
                continue
            added += created
        return added

    async def get(self, pack_id: str, version: str | None = None) -> PromptPack:
        """A pack version; on a miss, look for uploads made on other instances. Without
        a version, the latest one, checked against the store's uploads (module doc)."""
        if version is None:
            await self._check_uploads()
        try:
            return self.registry.get(pack_id, version)
        except PackNotFound:
            if not await self.sync():
                raise
            return self.registry.get(pack_id, version)

    async def _check_uploads(self) -> None:
        now = self._monotonic()
        if now - self._checked_at < self._latest_check_s:
            return
        self._checked_at = now  # before the read: concurrent callers do not all read
        if await self._store.pack_count() != self._synced_count:
            await self.sync()

    async def list(self, *, limit: int, cursor: str | None) -> Page[PackSummary]:
        """Pack summaries by id; `cursor` is the `next_cursor` of the previous page."""
        await self.sync()
        after = decode_cursor(cursor, 1)[0] if cursor is not None else None
        found = [s for s in self.registry.list() if after is None or s.id > after]
        page = found[:limit]
        more = len(found) > limit
        return Page(data=page, next_cursor=encode_cursor(page[-1].id) if more else None)

    async def upload(self, document: Any) -> tuple[PackSummary, bool]:
        """Validate, persist (first writer wins across instances) and register a pack."""
        pack = parse_pack(document, request_caps=True)
        try:
            known = self.registry.get(pack.id, pack.version)
        except PackNotFound:
            known = None
        ours = pack.to_document()
        if known is not None:
            if _canonical(known.to_document()) != _canonical(ours):
                raise PackExists(
                    f"PromptPack {pack.id!r} version {pack.version} is already loaded with "
                    "different content; publish it under a new version."
                )
            return self.registry.summary(pack.id, pack.version), False
        stored, created = await self._store.save_pack(pack.id, pack.version, ours)
        if _canonical(stored) != _canonical(ours):
            self.registry.add(stored)
            raise PackExists(
                f"PromptPack {pack.id!r} version {pack.version} was uploaded with different "
                "content by another request; publish it under a new version."
            )
        self.registry.add(stored)
        log.info("pack uploaded id=%s version=%s", pack.id, pack.version)
        return self.registry.summary(pack.id, pack.version), created
