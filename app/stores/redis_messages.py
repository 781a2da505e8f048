"""Messages in the Redis store: append (the turn's commit), read by id, path, children.

The calls behind `RedisStore`'s message methods (what each costs in `app.stores.redis`).
Separate from `redis_store` (the `StateStore` seam) and from `redis_conversations`: the
append is the hot path of every turn, with its own script and its media references.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.domain import Conversation, ConversationStatus, Message, Usage
from app.errors import Conflict, ConversationNotFound, HeadConflict, MediaNotFound
from app.stores.base import media_references
from app.stores.redis_after_commit import after_commit
from app.stores.redis_codec import (
    conversation_from_fields,
    float_text,
    message_args,
    messages_from_json,
    pairs_to_dict,
)
from app.stores.redis_conn import RedisClient
from app.stores.redis_index import Indexes
from app.stores.redis_keys import RedisKeys, to_us
from app.stores.redis_media import MediaOps
from app.stores.redis_refs import Directory
from app.stores.redis_scripts import Scripts

_MGET_CHUNK = 2000


class MessageOps:
    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys,
        scripts: Scripts,
        *,
        cluster: bool,
        indexes: Indexes,
        media: MediaOps,
        directory: Directory,
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._cluster = cluster
        self._indexes = indexes
        self._media = media
        self._directory = directory

    async def append(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        *,
        usage: Usage,
        cost_usd: float,
        now: datetime,
        status: ConversationStatus | None = None,
    ) -> Conversation:
        if not messages:
            raise ValueError("append_messages needs at least one message")
        c = conversation
        last = messages[-1]
        args = [
            c.id,
            str(to_us(now)),
            c.head_message_id or "",
            str(len(messages)),
            str(last.depth + 1),
            str(usage.input_tokens),
            str(usage.output_tokens),
            str(usage.total_tokens),
            float_text(cost_usd),
            status.value if status is not None else "",
            c.user_id,
            c.pack_id,
            str(to_us(c.created_at)),
            *message_args(list(messages)),
        ]
        refs = media_references(messages)
        media_ids = list(dict.fromkeys(media_id for _, media_id in refs))
        hints: list[str] = []
        if media_ids:
            found = await self._media.hint(c.lineage_id, media_ids)
            if found is None:
                raise MediaNotFound("Media referenced by the message was not found.")
            hints = found
            args += [f"{media_id}\x00{message_id}" for message_id, media_id in refs]
        lk = self._keys.lineage(c.lineage_id)
        # on one server the script re-scores the index too (one round trip less)
        index_keys = [] if self._cluster else self._indexes.score_keys(c)
        reply = await self._scripts.append(
            keys=[*lk.with_conversation(c.id), lk.mrefs, lk.sums, lk.ctx, *index_keys],
            args=args,
        )
        outcome = reply[0]
        if outcome == "NOTFOUND":
            raise ConversationNotFound(f"Conversation {c.id!r} not found.")
        if outcome == "HEAD":
            raise HeadConflict(f"Conversation {c.id!r} head moved.")
        if outcome == "DUP":
            raise Conflict("A message with this id already exists in the lineage.")
        fields = pairs_to_dict(reply[1])
        stored = conversation_from_fields(fields)
        sliding = stored.ttl_seconds is not None
        tasks = [] if reply[2] == "1" else [self._indexes.write(stored, expiry=sliding)]
        if media_ids:
            tasks.append(self._media.confirm(c.lineage_id, media_ids, hints))
        if sliding and stored.expires_at is not None:
            exp_us = to_us(stored.expires_at)
            tasks.append(self._directory.mirror(c.id, fields["tok"], fields["ev"], exp_us))
        await after_commit(*tasks)
        return stored

    async def get(self, lineage_id: str, message_ids: Sequence[str]) -> list[Message]:
        wanted = list(dict.fromkeys(message_ids))
        if not wanted:
            return []
        key = self._keys.lineage(lineage_id).msg
        pipe: Any = self._client.pipeline(transaction=False)
        for start in range(0, len(wanted), _MGET_CHUNK):
            pipe.hmget(key, wanted[start : start + _MGET_CHUNK])
        values = [v for chunk in await pipe.execute() for v in chunk]
        found = {i: v for i, v in zip(wanted, values, strict=True) if v is not None}
        return [Message.model_validate_json(found[i]) for i in message_ids if i in found]

    async def path(self, lineage_id: str, message_id: str, *, limit: int) -> list[Message]:
        if limit < 1:
            return []
        lk = self._keys.lineage(lineage_id)
        values = await self._scripts.path(keys=[lk.par, lk.msg], args=[message_id, limit])
        return messages_from_json(values)

    async def ancestor(self, lineage_id: str, message_id: str, *, steps: int) -> str | None:
        if steps < 0:
            return None
        lk = self._keys.lineage(lineage_id)
        found = await self._scripts.ancestor(keys=[lk.par], args=[message_id, steps])
        return str(found) or None  # decode_responses: a str

    async def children(self, lineage_id: str, parent_id: str | None) -> list[Message]:
        lk = self._keys.lineage(lineage_id)
        values = await self._scripts.children(keys=[lk.kids, lk.msg], args=[parent_id or ""])
        children = messages_from_json(values)
        children.sort(key=lambda m: (m.created_at, m.id))
        return children
