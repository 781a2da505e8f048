"""`RedisStore`: the `redis://` / `redis+cluster://` `StateStore` (design notes, key layout
and consistency model in `app.stores.redis`)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from app.domain import Checkpoint, Conversation, ConversationStatus, Message, Page, Usage
from app.domain.context_item import ContextItem
from app.domain.media import MediaRecord
from app.domain.summary import Summary
from app.errors import (
    Conflict,
    ContextItemsFull,
    ConversationExists,
    ConversationNotFound,
    HeadConflict,
    MediaNotFound,
    StoreUnavailable,
)
from app.stores._common import parse_listing_cursor
from app.stores.base import (
    ConversationFilter,
    StateStore,
    StoreCapabilities,
    media_references,
)
from app.stores.redis_codec import (
    conversation_from_fields,
    float_text,
    message_args,
    messages_from_json,
    pairs_to_dict,
)
from app.stores.redis_conn import (
    UNAVAILABLE_ERRORS,
    ClientOptions,
    RedisClient,
    build_client,
    close_client,
    guarded,
    parse_redis_url,
    unavailable,
)
from app.stores.redis_context_items import ContextItemOps
from app.stores.redis_index import Indexes
from app.stores.redis_keys import (
    LineageKeys,
    RedisKeys,
    pack_field,
    to_us,
)
from app.stores.redis_lineage import LineageOps
from app.stores.redis_media import MediaOps
from app.stores.redis_reclaim import RECLAIM_CHUNK, Reclaimer
from app.stores.redis_refs import Directory
from app.stores.redis_scan import conversations_of_user
from app.stores.redis_scan import footprint as redis_footprint
from app.stores.redis_scripts import Scripts
from app.stores.redis_summaries import SummaryOps

log = logging.getLogger("parley.stores.redis")

REF_GRACE_MS = 60_000  # a ref key outlives its conversation by this much (see module doc)
_MGET_CHUNK = 2000
_ERASE_CONCURRENCY = 8


@dataclass(frozen=True)
class _Parts:
    """What `open()` builds."""

    client: RedisClient
    scripts: Scripts
    indexes: Indexes
    lineages: LineageOps
    directory: Directory
    media: MediaOps
    summaries: SummaryOps
    context_items: ContextItemOps


class RedisStore(StateStore):
    capabilities = StoreCapabilities(native_ttl=True, shared=True)

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        options: ClientOptions | None = None,
        ref_grace_ms: int = REF_GRACE_MS,
        reclaim_chunk: int = RECLAIM_CHUNK,
    ) -> None:
        """`prefix` overrides the URL's `?prefix=`; `ref_grace_ms` is how long a ref key
        outlives its conversation (and index entries wait before being collected)."""
        self._target = parse_redis_url(url)
        self._grace_ms = ref_grace_ms
        self._reclaim_chunk = reclaim_chunk
        self.keys = RedisKeys(self._target.prefix if prefix is None else prefix)
        self._options = options or ClientOptions()
        self._parts: _Parts | None = None

    @property
    def call_timeout_s(self) -> float | None:
        """Every store call is cut here (`redis_conn.guarded`)."""
        return self._options.call_timeout_s

    @property
    def cluster(self) -> bool:
        return self._target.cluster

    @property
    def _p(self) -> _Parts:
        if self._parts is None:
            raise RuntimeError("RedisStore.open() has not been called")
        return self._parts

    @property
    def client(self) -> RedisClient:
        return self._p.client

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._parts is not None:
            return
        client = build_client(self._target, self._options)
        try:
            with unavailable():
                async with asyncio.timeout(self.call_timeout_s):
                    await client.ping()
        except BaseException:
            await close_client(client)
            raise
        scripts = Scripts.register(client)
        indexes = Indexes(client, self.keys, scripts, grace_ms=self._grace_ms)
        lineages = LineageOps(
            client, self.keys, scripts, Reclaimer(client, self.keys, chunk=self._reclaim_chunk)
        )
        directory = Directory(
            client, self.keys, scripts, lineages, indexes, grace_ms=self._grace_ms
        )
        self._parts = _Parts(
            client,
            scripts,
            indexes,
            lineages,
            directory,
            MediaOps(client, self.keys),
            SummaryOps(client, self.keys),
            ContextItemOps(client),
        )

    async def close(self) -> None:
        parts, self._parts = self._parts, None
        if parts is not None:
            await close_client(parts.client)

    @guarded
    async def ping(self) -> None:
        """PING; on a cluster every primary, since each holds a share of the lineages."""
        if self._parts is None:
            raise StoreUnavailable("The state store is not open.")
        client = self._parts.client
        if isinstance(client, RedisCluster):
            for node in client.get_primaries():  # one by one: no orphaned failed tasks
                await client.ping(target_nodes=node)
        else:
            await client.ping()

    async def _after_commit(self, *steps: Awaitable[Any]) -> None:
        """Bookkeeping after a script committed (index entries, the ref's expiry, index
        clean-up): a failure is logged, not raised, because the write itself is done and
        both indexes and refs tolerate a lost update (see the module doc)."""
        for result in await asyncio.gather(*steps, return_exceptions=True):
            if isinstance(result, (RedisError, *UNAVAILABLE_ERRORS)):
                log.warning("index/ref update after a commit failed: %r", result)
            elif isinstance(result, BaseException):
                raise result

    # --- conversations -----------------------------------------------------------------

    @guarded
    async def create_conversation(self, conversation: Conversation) -> Conversation:
        c = conversation
        tok = uuid.uuid4().hex
        if not await self._p.directory.claim(c, tok):
            raise ConversationExists(f"Conversation {c.id!r} already exists.")
        try:
            if self.cluster:
                # Index entries live in other slots: written first, so an acknowledged
                # create is listed and erased (a failed create leaves only entries that
                # listing skips and drops). On one server they join the create script.
                await self._p.indexes.write(c)
                await self._p.lineages.create(c, tok, [])
            else:
                await self._p.lineages.create(c, tok, self._p.indexes.script_keys(c))
        except BaseException:
            # Free the id for a retry; if Redis is gone too, the claim expires by itself
            # (an uncommitted claim is abandoned after `redis_refs.CLAIM_TIMEOUT_MS`).
            with contextlib.suppress(RedisError, OSError):
                await self._p.directory.release(c.id, tok)
            raise
        self._p.directory.remember(c.id, c.lineage_id)
        expires_us = to_us(c.expires_at) if c.expires_at is not None else None
        await self._after_commit(
            self._p.directory.mirror(c.id, tok, "0", expires_us),
            self._p.indexes.collect_expired(),
        )
        return c.model_copy(deep=True)

    @guarded
    async def get_conversation(self, conversation_id: str, *, now: datetime) -> Conversation | None:
        async def load(lk: LineageKeys) -> dict[str, str] | None:
            fields = cast(dict[str, str], await self.client.hgetall(lk.conv(conversation_id)))
            return fields or None

        fields = await self._p.directory.on_lineage(conversation_id, load)
        if fields is None:
            return None
        c = conversation_from_fields(fields)
        if c.expires_at is not None and c.expires_at <= now:
            return None
        return c

    @guarded
    async def update_conversation(
        self, conversation: Conversation, *, expected_version: int
    ) -> Conversation:
        new = conversation.model_copy(deep=True, update={"version": expected_version + 1})
        index_keys = [] if self.cluster else self._p.indexes.script_keys(new)
        result = await self._p.lineages.update(new, expected_version, index_keys)
        old_user, old_pack, ev, changed, tok = result
        self._p.directory.remember(new.id, new.lineage_id)
        expires_us = to_us(new.expires_at) if new.expires_at is not None else None
        tasks = [self._p.indexes.write(new, previous=(old_user, old_pack))]
        if changed == "1":
            tasks.append(self._p.directory.mirror(new.id, tok, ev, expires_us))
        await self._after_commit(*tasks)
        return new.model_copy(deep=True)

    @guarded
    async def touch_conversation(self, conversation_id: str, expires_at: datetime) -> None:
        exp_us = to_us(expires_at)

        async def touch(lk: LineageKeys) -> list[str] | None:
            return await self._p.lineages.touch(lk, conversation_id, exp_us) or None

        result = await self._p.directory.on_lineage(conversation_id, touch)
        if result is None:
            return
        ev, user, pack, tok = result
        await self._after_commit(
            self._p.directory.mirror(conversation_id, tok, ev, exp_us),
            self._p.indexes.set_expiry(conversation_id, user, pack, exp_us),
        )

    @guarded
    async def delete_conversation(self, conversation_id: str) -> bool:
        return await self._delete(conversation_id, user_id="")

    async def _delete(self, cid: str, *, user_id: str) -> bool:
        async def reclaim(lk: LineageKeys) -> list[Any] | None:
            return await self._p.lineages.reclaim(lk, cid, mode="any", user=user_id)

        info = await self._p.directory.on_lineage(cid, reclaim)
        if info is None:
            return False
        _, user, pack, tok = info
        # Indexes first, the ref last: a new conversation with this id can only be
        # created once the ref is gone, so these removals never hit its entries.
        await self._after_commit(self._p.indexes.remove(cid, user, pack))
        await self._after_commit(self._p.directory.release(cid, tok))
        return True

    async def delete_user_conversations(self, user_id: str) -> list[str]:
        """Not bounded as a whole (a user may have many conversations): each step is.
        Deletions run `_ERASE_CONCURRENCY` at a time (forks of one lineage retry).

        Complete even when an index entry was lost: the candidates are the user index's
        members plus every conversation hash whose `user` is this user, found by a SCAN
        of the conversation hashes (`redis_scan.conversations_of_user`, O(keys))."""
        indexed = await self._user_members(user_id)
        scanned = await self._scanned_members(user_id)
        candidates = sorted(set(indexed) | set(scanned))
        gate = asyncio.Semaphore(_ERASE_CONCURRENCY)

        async def one(cid: str) -> bool:
            async with gate:
                return await self._delete_of_user(cid, user_id)

        done = await asyncio.gather(*(one(cid) for cid in candidates))
        return [cid for cid, deleted in zip(candidates, done, strict=True) if deleted]

    @guarded
    async def _user_members(self, user_id: str) -> list[str]:
        return await self._p.indexes.user_members(user_id)

    async def _scanned_members(self, user_id: str) -> list[str]:
        """Not cut at the call timeout as a whole (a SCAN of every key); each command is
        bounded by the client's socket timeout."""
        with unavailable():
            return await conversations_of_user(self._p.client, self.keys, user_id)

    @guarded
    async def footprint(self, lineage_id: str, conversation_ids: Sequence[str]) -> dict[str, int]:
        return await redis_footprint(
            self._p.client, self.keys, self.keys.lineage(lineage_id), conversation_ids
        )

    @guarded
    async def _delete_of_user(self, cid: str, user_id: str) -> bool:
        return await self._delete(cid, user_id=user_id)

    @guarded
    async def list_conversations(
        self,
        flt: ConversationFilter,
        *,
        now: datetime,
        limit: int,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        after = None
        if cursor is not None:
            when, after_id = parse_listing_cursor(cursor)
            after = (to_us(when), after_id)
        data, next_cursor = await self._p.indexes.scan(
            flt, now=now, limit=limit, after=after, fetch=self._p.directory.fetch_many
        )
        return Page(data=data, next_cursor=next_cursor)

    # --- messages ----------------------------------------------------------------------

    @guarded
    async def append_messages(
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
            *message_args(list(messages)),
        ]
        refs = media_references(messages)
        media_ids = list(dict.fromkeys(media_id for _, media_id in refs))
        hints: list[str] = []
        if media_ids:
            found = await self._p.media.hint(c.lineage_id, media_ids)
            if found is None:
                raise MediaNotFound("Media referenced by the message was not found.")
            hints = found
            args += [f"{media_id}\x00{message_id}" for message_id, media_id in refs]
        lk = self.keys.lineage(c.lineage_id)
        # on one server the script re-scores the index too (one round trip less)
        index_keys = [] if self.cluster else self._p.indexes.score_keys(c)
        reply = await self._p.scripts.append(
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
        tasks = [] if reply[2] == "1" else [self._p.indexes.write(stored, expiry=sliding)]
        if media_ids:
            tasks.append(self._p.media.confirm(c.lineage_id, media_ids, hints))
        if sliding and stored.expires_at is not None:
            exp_us = to_us(stored.expires_at)
            tasks.append(self._p.directory.mirror(c.id, fields["tok"], fields["ev"], exp_us))
        await self._after_commit(*tasks)
        return stored

    @guarded
    async def get_messages(self, lineage_id: str, message_ids: Sequence[str]) -> list[Message]:
        wanted = list(dict.fromkeys(message_ids))
        if not wanted:
            return []
        key = self.keys.lineage(lineage_id).msg
        pipe: Any = self.client.pipeline(transaction=False)
        for start in range(0, len(wanted), _MGET_CHUNK):
            pipe.hmget(key, wanted[start : start + _MGET_CHUNK])
        values = [v for chunk in await pipe.execute() for v in chunk]
        found = {i: v for i, v in zip(wanted, values, strict=True) if v is not None}
        return [Message.model_validate_json(found[i]) for i in message_ids if i in found]

    @guarded
    async def get_path(self, lineage_id: str, message_id: str, *, limit: int) -> list[Message]:
        if limit < 1:
            return []
        lk = self.keys.lineage(lineage_id)
        values = await self._p.scripts.path(keys=[lk.par, lk.msg], args=[message_id, limit])
        return messages_from_json(values)

    @guarded
    async def list_children(self, lineage_id: str, parent_id: str | None) -> list[Message]:
        lk = self.keys.lineage(lineage_id)
        values = await self._p.scripts.children(keys=[lk.kids, lk.msg], args=[parent_id or ""])
        children = messages_from_json(values)
        children.sort(key=lambda m: (m.created_at, m.id))
        return children

    # --- summaries ----------------------------------------------------------------------

    @guarded
    async def save_summary(self, summary: Summary) -> Summary:
        await self._p.summaries.save(summary)
        return summary.model_copy(deep=True)

    @guarded
    async def list_summaries(self, lineage_id: str) -> list[Summary]:
        return await self._p.summaries.of_lineage(lineage_id)

    @guarded
    async def delete_summary(self, lineage_id: str, summary_id: str) -> bool:
        return await self._p.summaries.delete(lineage_id, summary_id)

    # --- checkpoints -------------------------------------------------------------------

    @guarded
    async def create_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        cid = checkpoint.conversation_id

        async def create(lk: LineageKeys) -> str | None:
            outcome: str = await self._p.scripts.checkpoint(
                keys=[lk.conv(cid), lk.cps(cid)],
                args=[checkpoint.id, checkpoint.model_dump_json()],
            )
            return None if outcome == "NOTFOUND" else outcome

        outcome = await self._p.directory.on_lineage(cid, create)
        if outcome is None:
            raise ConversationNotFound(f"Conversation {cid!r} not found.")
        if outcome == "CONFLICT":
            raise Conflict(f"Checkpoint {checkpoint.id!r} already exists.")
        return checkpoint.model_copy(deep=True)

    @guarded
    async def list_checkpoints(
        self, conversation_id: str, *, kind: str | None = None
    ) -> list[Checkpoint]:
        async def load(lk: LineageKeys) -> list[str] | None:
            values = cast(list[str], await self.client.hvals(lk.cps(conversation_id)))
            return values or None

        values = await self._p.directory.on_lineage(conversation_id, load) or []
        found = [Checkpoint.model_validate_json(v) for v in values]
        found = [cp for cp in found if kind is None or cp.kind == kind]
        found.sort(key=lambda cp: (cp.created_at, cp.id))
        return found

    @guarded
    async def get_checkpoint(self, conversation_id: str, checkpoint_id: str) -> Checkpoint | None:
        async def load(lk: LineageKeys) -> str | None:
            value = await self.client.hget(lk.cps(conversation_id), checkpoint_id)
            return cast(str | None, value)

        value = await self._p.directory.on_lineage(conversation_id, load)
        return Checkpoint.model_validate_json(value) if value is not None else None

    @guarded
    async def delete_checkpoint(self, conversation_id: str, checkpoint_id: str) -> bool:
        async def delete(lk: LineageKeys) -> bool | None:
            removed: int = await self.client.hdel(lk.cps(conversation_id), checkpoint_id)
            return removed > 0 or None

        return bool(await self._p.directory.on_lineage(conversation_id, delete))

    # --- context items ------------------------------------------------------------------

    @guarded
    async def save_context_item(
        self, item: ContextItem, *, max_items: int | None = None
    ) -> ContextItem:
        cid = item.conversation_id

        async def save(lk: LineageKeys) -> str | None:
            return await self._p.context_items.save(lk, item, max_items)

        outcome = await self._p.directory.on_lineage(cid, save)
        if outcome is None:
            raise ConversationNotFound(f"Conversation {cid!r} not found.")
        if outcome == "CONFLICT":
            raise Conflict(f"Context item {item.id!r} already exists.")
        if outcome == "FULL":
            raise ContextItemsFull(f"The conversation already has {max_items} context items.")
        return item.model_copy(deep=True)

    @guarded
    async def list_context_items(self, conversation_id: str) -> list[ContextItem]:
        async def load(lk: LineageKeys) -> list[ContextItem] | None:
            return await self._p.context_items.of_conversation(lk, conversation_id) or None

        return await self._p.directory.on_lineage(conversation_id, load) or []

    @guarded
    async def delete_context_item(self, conversation_id: str, item_id: str) -> bool:
        async def delete(lk: LineageKeys) -> bool | None:
            return await self._p.context_items.delete(lk, conversation_id, item_id) or None

        return bool(await self._p.directory.on_lineage(conversation_id, delete))

    @guarded
    async def delete_context_items(self, conversation_id: str) -> int:
        async def delete(lk: LineageKeys) -> int | None:
            return await self._p.context_items.delete_all(lk, conversation_id) or None

        return await self._p.directory.on_lineage(conversation_id, delete) or 0

    # --- uploaded packs ----------------------------------------------------------------

    @guarded
    async def save_pack(
        self, pack_id: str, version: str, document: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        k = self.keys
        reply = await self._p.scripts.pack_save(
            keys=[k.pack_docs, k.pack_order],
            args=[pack_field(pack_id, version), json.dumps(document)],
        )
        if reply[0] == 1:
            return copy.deepcopy(document), True
        stored: dict[str, Any] = json.loads(reply[1])
        return stored, False

    @guarded
    async def list_packs(self) -> list[dict[str, Any]]:
        k = self.keys
        values = await self._p.scripts.pack_list(keys=[k.pack_docs, k.pack_order], args=[])
        return [json.loads(v) for v in values if v is not None]

    # --- media records and references (protocol in `redis_media`) -------------------------

    @guarded
    async def save_media(self, record: MediaRecord) -> MediaRecord:
        return await self._p.media.save(record)

    @guarded
    async def get_media(self, media_id: str) -> MediaRecord | None:
        return await self._p.media.get(media_id)

    @guarded
    async def mark_media_attached(self, media_ids: Sequence[str], *, retain: bool) -> None:
        await self._p.media.mark_attached(media_ids, retain)

    @guarded
    async def media_in_use(self, sha256: str) -> bool:
        return await self._p.media.in_use(sha256)

    @guarded
    async def lineage_media_ids(self, lineage_id: str) -> list[str]:
        return await self._p.media.lineage_ids(lineage_id)

    @guarded
    async def collect_media(
        self, media_ids: Sequence[str], *, force: bool = False
    ) -> list[MediaRecord]:
        deleted = []
        for media_id in dict.fromkeys(media_ids):
            found = await self._p.media.collect_one(media_id, force=force)
            if found is not None:
                deleted.append(found)
        return deleted

    @guarded
    async def user_media_ids(self, user_id: str) -> list[str]:
        return await self._p.media.user_ids(user_id)

    @guarded
    async def collectable_media_ids(self, *, limit: int) -> list[str]:
        return await self._p.media.collectable(limit)

    # --- expiry ------------------------------------------------------------------------

    @guarded
    async def purge_expired(self, *, now: datetime) -> int:
        """Redis expires conversations itself (`capabilities.native_ttl`): nothing to
        reclaim. Only drops index entries the expiry left behind and finishes chunked
        reclaims a dying process left (`redis_reclaim`); returns 0."""
        await self._p.indexes.collect_expired()
        await self._p.lineages.finish_pending()
        return 0
