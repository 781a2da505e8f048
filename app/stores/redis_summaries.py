"""Context summaries in the Redis store.

Layout: one hash per lineage, `<prefix>{<lineage_id>}:sums` (summary id -> `Summary`
JSON), under the lineage's hash tag, so every script below runs on one node. It is not
one of the lineage's fixed keys, so it follows their expiry explicitly: the append and
touch scripts copy the lineage's TTL onto it (`follow_lineage_ttl` in `redis_scripts_lineage`),
and so do the scripts here. The deletion script drops the summaries of every message it
drops, and the whole hash with the lineage. A lineage whose `convs` key is gone (expired
by Redis) has no summaries, whatever is left of the hash.
"""

from __future__ import annotations

from redis.commands.core import AsyncScript

from app.domain.summary import Summary
from app.errors import Conflict, MessageNotFound
from app.stores.redis_conn import RedisClient
from app.stores.redis_keys import RedisKeys

# KEYS: convs, msg, sums. ARGV: summary id, covered message id, JSON.
SAVE = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then
  return 'NOTFOUND'
end
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[3]) == 0 then return 'CONFLICT' end
local ms = redis.call('PTTL', KEYS[1])
if ms > 0 then redis.call('PEXPIRE', KEYS[3], ms) end
return 'OK'
"""

# KEYS: convs, sums. Every summary JSON of a live lineage.
LIST = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
return redis.call('HVALS', KEYS[2])
"""


class SummaryOps:
    def __init__(self, client: RedisClient, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys
        self._save: AsyncScript = client.register_script(SAVE)
        self._list: AsyncScript = client.register_script(LIST)

    async def save(self, summary: Summary) -> None:
        lk = self._keys.lineage(summary.lineage_id)
        outcome = await self._save(
            keys=[lk.convs, lk.msg, lk.sums],
            args=[summary.id, summary.covers_message_id, summary.model_dump_json()],
        )
        if outcome == "NOTFOUND":
            raise MessageNotFound(f"Message {summary.covers_message_id!r} not found.")
        if outcome == "CONFLICT":
            raise Conflict(f"Summary {summary.id!r} already exists.")

    async def of_lineage(self, lineage_id: str) -> list[Summary]:
        lk = self._keys.lineage(lineage_id)
        values = await self._list(keys=[lk.convs, lk.sums])
        found = [Summary.model_validate_json(v) for v in values]
        found.sort(key=lambda s: (s.created_at, s.id))
        return found

    async def delete(self, lineage_id: str, summary_id: str) -> bool:
        deleted = await self._client.hdel(self._keys.lineage(lineage_id).sums, summary_id)
        return bool(deleted)
