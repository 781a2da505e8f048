"""Reads of the Redis store that SCAN the keyspace instead of trusting an index: the
conversations of a user (for erasure) and a lineage's footprint. O(keys under the
store's prefix): for erasure, tests and ops, never for request paths. On a cluster every
primary is scanned (redis-py's `scan_iter` does)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from app.stores.redis_conn import RedisClient
from app.stores.redis_keys import LineageKeys, RedisKeys

SCAN_COUNT = 1000
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """`text` matched literally in a SCAN MATCH pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


async def _scan(client: RedisClient, pattern: str) -> list[str]:
    return [str(k) async for k in client.scan_iter(match=pattern, count=SCAN_COUNT)]


async def conversations_of_user(client: RedisClient, keys: RedisKeys, user_id: str) -> list[str]:
    """Ids of every stored conversation hash whose `user` is `user_id`, found by scanning
    the conversation hashes themselves (`<prefix>{<lineage>}:c:<id>`): a conversation
    exists exactly when its hash does, so this finds it whatever happened to the
    listing indexes."""
    found: list[str] = []
    conv_keys = await _scan(client, f"{glob_escape(keys.prefix)}{{*}}:c:*")
    for i in range(0, len(conv_keys), SCAN_COUNT):
        batch = conv_keys[i : i + SCAN_COUNT]
        pipe: Any = client.pipeline(transaction=False)
        for key in batch:
            pipe.hget(key, "user")
        for key, owner in zip(batch, await pipe.execute(), strict=True):
            if owner == user_id:
                found.append(key.rsplit("}:c:", 1)[1])
    return found


async def footprint(
    client: RedisClient, keys: RedisKeys, lk: LineageKeys, conversation_ids: Sequence[str]
) -> dict[str, int]:
    """`StateStore.footprint`: the lineage's keys and what they hold, the ref keys and
    every listing index entry of these conversation ids, and the pending-reclaim mark."""
    ids = list(conversation_ids)
    lineage_keys = await _scan(client, f"{glob_escape(lk.tag)}*")
    conv_keys = [k for k in lineage_keys if k.startswith(f"{lk.tag}c:")]
    cp_keys = [k for k in lineage_keys if k.startswith(f"{lk.tag}cp:")]
    index_keys = [
        keys.idx_all,
        keys.idx_ids,
        *await _scan(client, f"{glob_escape(keys.prefix)}idx:user:*"),
        *await _scan(client, f"{glob_escape(keys.prefix)}idx:pack:*"),
    ]
    pipe: Any = client.pipeline(transaction=False)
    pipe.hlen(lk.msg)
    pipe.zcard(lk.mrefs)
    pipe.hlen(lk.sums)
    pipe.hlen(lk.ctx)
    pipe.zscore(keys.reclaim_pending, lk.lineage_id)
    for key in cp_keys:
        pipe.hlen(key)
    for cid in ids:
        pipe.exists(keys.ref(cid))
        for index in index_keys:
            pipe.zscore(index, cid)
    replies = await pipe.execute()
    msgs, mrefs, sums, ctx, pending = replies[:5]
    rest = replies[5:]
    checkpoints = sum(int(n) for n in rest[: len(cp_keys)])
    per_id = rest[len(cp_keys) :]
    width = 1 + len(index_keys)
    refs = sum(int(per_id[i * width]) for i in range(len(ids)))
    entries = sum(
        1 for i in range(len(ids)) for s in per_id[i * width + 1 : (i + 1) * width] if s is not None
    )
    expiry_entries = 0
    for cid in ids:
        async for _ in client.zscan_iter(keys.idx_exp, match=f'*"{glob_escape(cid)}"*'):
            expiry_entries += 1
    return {
        "conversations": len(conv_keys),
        "checkpoints": checkpoints,
        "messages": int(msgs),
        "media_refs": int(mrefs),
        "summaries": int(sums),
        "context_items": int(ctx),
        "lineage_keys": len(lineage_keys),
        "refs": refs,
        "index_entries": entries + expiry_entries,
        "reclaim_pending": int(pending is not None),
    }
