"""The packs a conversation can use: files from `PARLEY_PACKS_DIR` plus packs uploaded
through the API, which are persisted in the state store so they survive restarts and are
visible to every instance sharing the store."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from app.domain.pagination import Page, decode_cursor, encode_cursor
from app.errors import PackExists, PackNotFound
from app.packs import PackRegistry, PackSummary, PromptPack, parse_pack
from app.stores.base import StateStore

log = logging.getLogger("parley.packs")


def _canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class PackLibrary:
    def __init__(self, registry: PackRegistry, store: StateStore) -> None:
        self.registry = registry
        self._store = store
        # Content hashes of stored documents already registered (or refused): a sync only
        # validates documents it has not seen, not every stored pack on every call.
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self.registry)

    async def sync(self) -> int:
        """Register stored uploads this instance has not seen yet; return how many."""
        added = 0
        for document in await self._store.list_packs():
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
        """A pack version; on a miss, look for uploads made on other instances."""
        try:
            return self.registry.get(pack_id, version)
        except PackNotFound:
            if not await self.sync():
                raise
            return self.registry.get(pack_id, version)

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
