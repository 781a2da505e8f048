"""Checkpoints in the Redis store: one hash per conversation, `P{L}:cp:<id>` (checkpoint
id -> JSON), under the lineage's hash tag and expiring with the conversation.

The calls behind `RedisStore`'s checkpoint methods; separate from `redis_store` (the
`StateStore` seam) so each kind of record has its own module.
"""

from __future__ import annotations

from typing import cast

from app.domain import Checkpoint
from app.domain.incarnation import Incarnation
from app.errors import Conflict, ConversationNotFound
from app.stores.redis_conn import RedisClient
from app.stores.redis_keys import LineageKeys, to_us
from app.stores.redis_refs import Directory
from app.stores.redis_scripts import Scripts


class CheckpointOps:
    def __init__(self, client: RedisClient, scripts: Scripts, directory: Directory) -> None:
        self._client = client
        self._scripts = scripts
        self._directory = directory

    async def create(
        self, checkpoint: Checkpoint, *, incarnation: Incarnation | None = None
    ) -> Checkpoint:
        cid = checkpoint.conversation_id
        ca = "" if incarnation is None else str(to_us(incarnation.created_at))

        async def create(lk: LineageKeys) -> str | None:
            if incarnation is not None and lk.lineage_id != incarnation.lineage_id:
                return None  # another conversation's lineage is under the id now
            outcome: str = await self._scripts.checkpoint(
                keys=[lk.conv(cid), lk.cps(cid)],
                args=[checkpoint.id, checkpoint.model_dump_json(), ca],
            )
            return None if outcome == "NOTFOUND" else outcome

        outcome = await self._directory.on_lineage(cid, create)
        if outcome is None:
            raise ConversationNotFound(f"Conversation {cid!r} not found.")
        if outcome == "CONFLICT":
            raise Conflict(f"Checkpoint {checkpoint.id!r} already exists.")
        return checkpoint.model_copy(deep=True)

    async def list(self, conversation_id: str, *, kind: str | None = None) -> list[Checkpoint]:
        async def load(lk: LineageKeys) -> list[str] | None:
            values = cast(list[str], await self._client.hvals(lk.cps(conversation_id)))
            return values or None

        values = await self._directory.on_lineage(conversation_id, load) or []
        found = [Checkpoint.model_validate_json(v) for v in values]
        found = [cp for cp in found if kind is None or cp.kind == kind]
        found.sort(key=lambda cp: (cp.created_at, cp.id))
        return found

    async def get(self, conversation_id: str, checkpoint_id: str) -> Checkpoint | None:
        async def load(lk: LineageKeys) -> str | None:
            value = await self._client.hget(lk.cps(conversation_id), checkpoint_id)
            return cast(str | None, value)

        value = await self._directory.on_lineage(conversation_id, load)
        return Checkpoint.model_validate_json(value) if value is not None else None

    async def delete(self, conversation_id: str, checkpoint_id: str) -> bool:
        async def delete(lk: LineageKeys) -> bool | None:
            removed: int = await self._client.hdel(lk.cps(conversation_id), checkpoint_id)
            return removed > 0 or None

        return bool(await self._directory.on_lineage(conversation_id, delete))
