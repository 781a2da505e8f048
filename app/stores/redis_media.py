"""Media records and references on the Redis store (DESIGN §13).

A record lives in its own slot (`m:{id}`), next to `ml:{id}`, the lineages that may
reference it. The references themselves are members of each lineage's `mrefs` zset, written
by the append script and dropped by the deletion script, so they change atomically with the
messages. Record and lineage are in different slots, so "never delete a referenced record"
is a protocol rather than a transaction:

* an append first *hints* each record it references (script on the record's slot: fails if
  the record is missing or being deleted, else sets `ml[L] = "p:<ms>:<token>"`), then
  commits, then *confirms* (`ml[L] = "c"` if still its token);
* a deletion first *dooms* the record (no new hint succeeds from then on), reads `ml`, and
  checks each lineage: a pending hint younger than `PENDING_GRACE_MS` counts as a
  reference (its commit may still land); otherwise the lineage references the record iff
  its `convs` key exists (the lineage is alive) and `mrefs` has a member for it. No
  reference: the record is deleted; else it is un-doomed.

Any hint that precedes the doom is seen by the check, and any later hint fails, so a commit
can only land while its hint protects the record. A crashed append leaves a pending hint,
which delays collection by the grace period (the sweep retries). A crashed deletion leaves
a doom mark, which expires after the same period. Bytes are protected by `mb:{sha}` (media
ids holding them, verified against the records), written before a record is created.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

from app.domain.media import MediaRecord
from app.stores.redis_conn import RedisClient
from app.stores.redis_keys import RedisKeys

PENDING_GRACE_MS = 60_000
RECHECK_MS = 60_000  # a still-referenced collectable record is looked at again after this

# KEYS: m, ml. ARGV: lineage, now_ms, token, grace_ms. 1 if hinted, 0 if missing/doomed.
HINT = """
local f = redis.call('HMGET', KEYS[1], 'r', 'd')
if not f[1] then return 0 end
if f[2] and tonumber(f[2]) > tonumber(ARGV[2]) - tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], 'p:' .. ARGV[2] .. ':' .. ARGV[3])
return 1
"""

# KEYS: ml. ARGV: lineage, the pending value this appender wrote.
CONFIRM = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], 'c')
end
return 0
"""

# KEYS: m, ml. ARGV: now_ms, force '1'|'0', grace_ms.
# {'GONE'} | {'SKIP'} (flags say keep) | {'BUSY'} (another deletion) | {'OK', json, ml...}
DOOM = """
local f = redis.call('HMGET', KEYS[1], 'r', 'a', 'k', 'd')
if not f[1] then return {'GONE'} end
if ARGV[2] ~= '1' and (f[2] ~= '1' or f[3] == '1') then return {'SKIP'} end
if f[4] and tonumber(f[4]) > tonumber(ARGV[1]) - tonumber(ARGV[3]) then return {'BUSY'} end
redis.call('HSET', KEYS[1], 'd', ARGV[1])
return {'OK', f[1], redis.call('HGETALL', KEYS[2])}
"""

# KEYS: m, ml. ARGV: doom ms. Deletes the record if the doom is still ours.
FINISH = """
if redis.call('HGET', KEYS[1], 'd') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""

# KEYS: m, ml. ARGV: doom ms, then (lineage, value) pairs of hints found stale.
UNDOOM = """
if redis.call('HGET', KEYS[1], 'd') == ARGV[1] then redis.call('HDEL', KEYS[1], 'd') end
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return 0
"""

# KEYS: convs, mrefs of a lineage. ARGV: media id. 1 if a stored message references it.
LINEAGE_REFERENCES = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return 0
end
local p = ARGV[1]
local m = redis.call(
  'ZRANGE', KEYS[2], '[' .. p .. '\\0', '(' .. p .. '\\1', 'BYLEX', 'LIMIT', 0, 1)
return #m
"""

# KEYS: m. ARGV: record json. 1 if created.
CREATE = """
if redis.call('HSETNX', KEYS[1], 'r', ARGV[1]) == 1 then return 1 end
return 0
"""

# KEYS: m, mc. ARGV: media id, retain '1'|'0', now_ms. Sets the flags of an existing record.
ATTACH = """
if redis.call('HEXISTS', KEYS[1], 'r') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'a', '1')
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'k', '1') end
return redis.call('HGET', KEYS[1], 'k') == '1' and 2 or 1
"""

# KEYS: mu. ARGV: sha, media id. Removes the owner entry if it is still that record.
RELEASE_OWNER = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _record(doc: str, fields: dict[str, str] | None = None) -> MediaRecord:
    data = json.loads(doc)
    fields = fields or {}
    data["attached"] = fields.get("a") == "1"
    data["retain"] = fields.get("k") == "1"
    return MediaRecord.model_validate(data)


class MediaOps:
    def __init__(self, client: RedisClient, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys
        r = client.register_script
        self._hint = r(HINT)
        self._confirm = r(CONFIRM)
        self._doom = r(DOOM)
        self._finish = r(FINISH)
        self._undoom = r(UNDOOM)
        self._lineage_refs = r(LINEAGE_REFERENCES)
        self._create = r(CREATE)
        self._attach = r(ATTACH)
        self._release_owner = r(RELEASE_OWNER)

    # --- records -------------------------------------------------------------------------

    async def save(self, record: MediaRecord) -> MediaRecord:
        k = self._keys
        owner = k.media_owner(record.user_id)
        existing_id = cast(str | None, await self._client.hget(owner, record.sha256))
        if existing_id is not None:
            existing = await self.get(existing_id)
            if existing is not None:
                return existing
        # The bytes' hint first: from now on media_in_use sees this record once it exists.
        await self._client.zadd(k.media_blob(record.sha256), {record.id: _now_ms()})
        doc = record.model_dump_json(exclude={"attached", "retain"})
        await self._create(keys=[k.media(record.id)], args=[doc])
        if not await self._client.hsetnx(owner, record.sha256, record.id):
            winner_id = cast(str | None, await self._client.hget(owner, record.sha256))
            winner = await self.get(winner_id) if winner_id else None
            if winner is not None and winner.id != record.id:
                await self._client.delete(k.media(record.id))
                return winner
            await self._client.hset(owner, record.sha256, record.id)  # a stale entry
        return record.model_copy()

    async def get(self, media_id: str) -> MediaRecord | None:
        fields = cast(dict[str, str], await self._client.hgetall(self._keys.media(media_id)))
        if "r" not in fields:
            return None
        return _record(fields["r"], fields)

    async def mark_attached(self, media_ids: Sequence[str], retain: bool) -> None:
        k = self._keys
        for media_id in dict.fromkeys(media_ids):
            state = await self._attach(
                keys=[k.media(media_id)], args=[media_id, "1" if retain else "0", _now_ms()]
            )
            if state == 1:
                await self._client.zadd(k.media_collect, {media_id: _now_ms()})
            elif state == 2:
                await self._client.zrem(k.media_collect, media_id)

    async def in_use(self, sha256: str) -> bool:
        key = self._keys.media_blob(sha256)
        ids = cast(list[str], await self._client.zrange(key, 0, -1))
        for media_id in ids:
            found = await self.get(media_id)
            if found is not None and found.sha256 == sha256:
                return True
        return False

    async def user_ids(self, user_id: str) -> list[str]:
        values = cast(list[str], await self._client.hvals(self._keys.media_owner(user_id)))
        return sorted(values)

    async def collectable(self, limit: int) -> list[str]:
        ids = await self._client.zrangebyscore(
            self._keys.media_collect, "-inf", _now_ms(), start=0, num=limit
        )
        return list(cast(list[str], ids))

    # --- references ----------------------------------------------------------------------

    async def hint(self, lineage_id: str, media_ids: Sequence[str]) -> list[str] | None:
        """Hint every record before an append; the pending values to confirm, or None if
        one of them is missing (hints already written stay pending and expire)."""
        k = self._keys
        token = uuid.uuid4().hex[:12]
        now = _now_ms()
        for media_id in media_ids:
            ok = await self._hint(
                keys=[k.media(media_id), k.media_lineages(media_id)],
                args=[lineage_id, now, token, PENDING_GRACE_MS],
            )
            if not ok:
                return None
        return [f"p:{now}:{token}"] * len(media_ids)

    async def confirm(self, lineage_id: str, media_ids: Sequence[str], values: list[str]) -> None:
        k = self._keys
        for media_id, value in zip(media_ids, values, strict=True):
            await self._confirm(keys=[k.media_lineages(media_id)], args=[lineage_id, value])

    async def lineage_ids(self, lineage_id: str) -> list[str]:
        members = cast(
            list[str], await self._client.zrange(self._keys.lineage(lineage_id).mrefs, 0, -1)
        )
        return sorted({m.split("\x00", 1)[0] for m in members})

    async def _referenced(self, media_id: str, hints: dict[str, str], now: int) -> list[str]:
        """The stale hints (lineage, value, flattened) if nothing references the record;
        raises `_Referenced` otherwise."""
        stale: list[str] = []
        for lineage_id, value in hints.items():
            if value.startswith("p:"):
                written = int(value.split(":")[1])
                if written > now - PENDING_GRACE_MS:
                    raise _Referenced
            lk = self._keys.lineage(lineage_id)
            if await self._lineage_refs(keys=[lk.convs, lk.mrefs], args=[media_id]):
                raise _Referenced
            stale += [lineage_id, value]
        return stale

    async def collect_one(self, media_id: str, *, force: bool) -> MediaRecord | None:
        k = self._keys
        keys = [k.media(media_id), k.media_lineages(media_id)]
        now = _now_ms()
        reply: list[Any] = await self._doom(
            keys=keys, args=[now, "1" if force else "0", PENDING_GRACE_MS]
        )
        if reply[0] in ("GONE", "SKIP"):
            await self._client.zrem(k.media_collect, media_id)
            return None
        if reply[0] == "BUSY":
            return None
        doc, flat = reply[1], reply[2]
        hints = dict(zip(flat[::2], flat[1::2], strict=True))
        try:
            stale = await self._referenced(media_id, hints, now)
        except _Referenced:
            await self._undoom(keys=keys, args=[now])
            await self._client.zadd(k.media_collect, {media_id: now + RECHECK_MS}, xx=True)
            return None
        except BaseException:
            await self._undoom(keys=keys, args=[now])
            raise
        if not await self._finish(keys=keys, args=[now]):
            return None
        record = _record(doc)
        await self._release_owner(
            keys=[k.media_owner(record.user_id)], args=[record.sha256, media_id]
        )
        await self._client.zrem(k.media_collect, media_id)
        await self._client.zrem(k.media_blob(record.sha256), media_id)
        del stale  # the hints went with `ml`
        return record


class _Referenced(Exception):
    """A lineage still (or may still) reference the record."""
