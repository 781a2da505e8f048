"""Context items in the Redis store.

Layout: one hash per lineage, `<prefix>{<lineage_id>}:ctx`, field
"<conversation id>\\0<item id>" -> `ContextItem` JSON, under the lineage's hash tag. Like
the summaries hash it follows the lineage's expiry (the append and touch scripts copy the
lineage's TTL onto it, and so does the save script here), which is never earlier than any
of its conversations'; the deletion script drops a conversation's fields with it, and the
whole hash with the lineage. Reads check the conversation's hash first, so an expired
conversation has no items whatever is left of the hash.

`ContextItemOps` runs the scripts on a lineage; `ContextItemCalls` (behind `RedisStore`'s
context item methods) finds the conversation's lineage first and maps the outcomes.
"""

from __future__ import annotations

from redis.commands.core import AsyncScript

from app.domain.context_item import ContextItem
from app.domain.incarnation import Incarnation
from app.errors import Conflict, ContextItemsFull, ConversationNotFound
from app.stores.redis_conn import RedisClient
from app.stores.redis_keys import KID_SEP, LineageKeys, to_us
from app.stores.redis_refs import Directory

# KEYS: convs, conversation hash, ctx. ARGV: field, JSON, the conversation's field prefix,
# the most items it may hold ('' for no limit), the incarnation it must find ('' for any:
# its created_at in µs; a hash from before `ca` is any). One script: the count and the
# insert are atomic.
SAVE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 'NOTFOUND' end
if ARGV[5] ~= '' then
  local ca = redis.call('HGET', KEYS[2], 'ca')
  if ca and ca ~= ARGV[5] then return 'NOTFOUND' end
end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 'CONFLICT' end
if ARGV[4] ~= '' then
  local held = 0
  for _, field in ipairs(redis.call('HKEYS', KEYS[3])) do
    if string.sub(field, 1, #ARGV[3]) == ARGV[3] then held = held + 1 end
  end
  if held >= tonumber(ARGV[4]) then return 'FULL' end
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local ms = redis.call('PTTL', KEYS[1])
if ms == -1 then redis.call('PERSIST', KEYS[3])
elseif ms > 0 then redis.call('PEXPIRE', KEYS[3], ms) end
return 'OK'
"""

# KEYS: conversation hash, ctx. ARGV: the conversation's field prefix.
LIST = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local out = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, #ARGV[1]) == ARGV[1] then out[#out + 1] = all[i + 1] end
end
return out
"""

# KEYS: ctx. ARGV: the conversation's field prefix. Deletes its fields, returns how many.
DELETE_ALL = """
local gone = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, #ARGV[1]) == ARGV[1] then
    gone = gone + redis.call('HDEL', KEYS[1], field)
  end
end
return gone
"""


def _field(conversation_id: str, item_id: str) -> str:
    return f"{conversation_id}{KID_SEP}{item_id}"


class ContextItemOps:
    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._save: AsyncScript = client.register_script(SAVE)
        self._list: AsyncScript = client.register_script(LIST)
        self._delete_all: AsyncScript = client.register_script(DELETE_ALL)

    async def save(
        self,
        lk: LineageKeys,
        item: ContextItem,
        max_items: int | None,
        incarnation: Incarnation | None = None,
    ) -> str | None:
        """'OK', 'CONFLICT' (the id is taken) or 'FULL' (`max_items` held already); None if
        the conversation (that incarnation) is not in this lineage (the caller re-reads
        its ref)."""
        cid = item.conversation_id
        if incarnation is not None and lk.lineage_id != incarnation.lineage_id:
            return None  # another conversation's lineage is under the id now
        outcome: str = await self._save(
            keys=[lk.convs, lk.conv(cid), lk.ctx],
            args=[
                _field(cid, item.id),
                item.model_dump_json(),
                _field(cid, ""),
                "" if max_items is None else str(max_items),
                "" if incarnation is None else str(to_us(incarnation.created_at)),
            ],
        )
        return None if outcome == "NOTFOUND" else outcome

    async def of_conversation(self, lk: LineageKeys, conversation_id: str) -> list[ContextItem]:
        values = await self._list(
            keys=[lk.conv(conversation_id), lk.ctx], args=[_field(conversation_id, "")]
        )
        found = [ContextItem.model_validate_json(v) for v in values]
        found.sort(key=lambda i: (i.created_at, i.id))
        return found

    async def delete(self, lk: LineageKeys, conversation_id: str, item_id: str) -> bool:
        return bool(await self._client.hdel(lk.ctx, _field(conversation_id, item_id)))

    async def delete_all(self, lk: LineageKeys, conversation_id: str) -> int:
        gone: int = await self._delete_all(keys=[lk.ctx], args=[_field(conversation_id, "")])
        return gone


class ContextItemCalls:
    """The store's context item calls: each on the conversation's lineage
    (`Directory.on_lineage`, which re-reads the ref when the cached lineage finds nothing)."""

    def __init__(self, ops: ContextItemOps, directory: Directory) -> None:
        self._ops = ops
        self._directory = directory

    async def save(
        self,
        item: ContextItem,
        *,
        max_items: int | None = None,
        incarnation: Incarnation | None = None,
    ) -> ContextItem:
        cid = item.conversation_id

        async def save(lk: LineageKeys) -> str | None:
            return await self._ops.save(lk, item, max_items, incarnation)

        outcome = await self._directory.on_lineage(cid, save)
        if outcome is None:
            raise ConversationNotFound(f"Conversation {cid!r} not found.")
        if outcome == "CONFLICT":
            raise Conflict(f"Context item {item.id!r} already exists.")
        if outcome == "FULL":
            raise ContextItemsFull(f"The conversation already has {max_items} context items.")
        return item.model_copy(deep=True)

    async def of_conversation(self, conversation_id: str) -> list[ContextItem]:
        async def load(lk: LineageKeys) -> list[ContextItem] | None:
            return await self._ops.of_conversation(lk, conversation_id) or None

        return await self._directory.on_lineage(conversation_id, load) or []

    async def delete(self, conversation_id: str, item_id: str) -> bool:
        async def delete(lk: LineageKeys) -> bool | None:
            return await self._ops.delete(lk, conversation_id, item_id) or None

        return bool(await self._directory.on_lineage(conversation_id, delete))

    async def delete_all(self, conversation_id: str) -> int:
        async def delete(lk: LineageKeys) -> int | None:
            return await self._ops.delete_all(lk, conversation_id) or None

        return await self._directory.on_lineage(conversation_id, delete) or 0
