"""Uploaded packs in the Redis store: `P{packs}:docs` (hash, [pack_id, version] ->
document) and `P{packs}:order` (list, upload order), under one hash tag of their own.

The calls behind `RedisStore`'s pack methods; separate from `redis_store` (the
`StateStore` seam) because packs belong to no lineage.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from app.stores.redis_conn import RedisClient
from app.stores.redis_keys import RedisKeys, pack_field
from app.stores.redis_scripts import Scripts


class PackOps:
    def __init__(self, client: RedisClient, keys: RedisKeys, scripts: Scripts) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts

    async def save(
        self, pack_id: str, version: str, document: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        k = self._keys
        reply = await self._scripts.pack_save(
            keys=[k.pack_docs, k.pack_order],
            args=[pack_field(pack_id, version), json.dumps(document)],
        )
        if reply[0] == 1:
            return copy.deepcopy(document), True
        stored: dict[str, Any] = json.loads(reply[1])
        return stored, False

    async def list(self) -> list[dict[str, Any]]:
        k = self._keys
        values = await self._scripts.pack_list(keys=[k.pack_docs, k.pack_order], args=[])
        return [json.loads(v) for v in values if v is not None]

    async def count(self) -> int:
        return int(await self._client.llen(self._keys.pack_order))
