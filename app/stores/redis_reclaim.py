"""Reclaiming a lineage's unreachable messages in bounded chunks (Redis).

Deleting a conversation (`redis_scripts_lineage.DELETE`) is O(conversations of the lineage): it
drops the conversation and, when other conversations of the lineage are still alive,
starts a reclaim (the lineage's `gc` hash). The messages nothing can reach any more are
then removed by `STEP`, one script call per chunk of about `chunk` messages (500 by
default), so a lineage of any size never blocks Redis for longer than one chunk.

The rule is the store contract's (a message goes when no remaining conversation wrote it
and none reaches it from its head, checkpoints or fork point; "wrote" is
`app.domain.incarnation.wrote`: a live fork wrote only the messages of its id dated at or
after its `created_at`, so one made again under a deleted fork's id keeps none of the
deleted one's; only such leaves are decoded for their date), computed without marking
the whole lineage: such a message has only such messages below it (a remaining
conversation's own messages hang under its fork point, which is kept), so removing, over
and over, the *leaves* not written by a remaining conversation and not a head,
checkpoint or fork point removes exactly them. A pass scans `wr` with HSCAN (cursor in
`gc.cur`); the parent of every message removed goes on the `gct` list and is looked at
again, so one pass plus draining `gct` is complete. A deletion during a pass restarts
the pass (its messages are new candidates). Nothing a live conversation can still see is
ever a candidate: what it may move to or branch from is on its path, its fork origin's
path or its own.

Every step is atomic and idempotent, so a process dying between chunks leaves a state the
next step continues from: the lineage stays in the `gc:pending` zset (written before the
deletion) and the periodic sweep (`RedisStore.purge_expired`), another deletion in the
lineage, or a create of a conversation id in it finishes the reclaim. Until then the
unreachable messages are only unreachable, never visible.
"""

from __future__ import annotations

import time
from typing import Any, cast

from app.errors import StoreUnavailable
from app.stores.redis_conn import RedisClient
from app.stores.redis_keys import LineageKeys, RedisKeys
from app.stores.redis_scripts import ZREM_IF_NOT_ABOVE
from app.stores.redis_scripts_lineage import _LINEAGE_TTL

RECLAIM_CHUNK = 500
_ATTEMPTS = 8

# KEYS: 1-5 fixed, 6 mrefs, 7 sums, 8 gc, 9 gct, then (conv, cps) of every conversation
# in `convs` as the client read them (checked: {-1} asks for a retry).
# ARGV: chunk, conversation ids... Returns {0} nothing pending, {1, n} done (n messages
# removed by this call), {2, n} more to do.
STEP = (
    _LINEAGE_TTL
    + """
local mrefs, sums, gc, gct = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
if redis.call('EXISTS', gc) == 0 then return {0} end
local listed = {}
for i = 2, #ARGV do listed[ARGV[i]] = true end
local members = redis.call('HKEYS', KEYS[1])
if #members ~= #ARGV - 1 then return {-1} end
for _, m in ipairs(members) do if not listed[m] then return {-1} end end
local alive, points, any_alive = {}, {}, false
for i = 2, #ARGV do
  local ck, cpk = KEYS[10 + (i - 2) * 2], KEYS[11 + (i - 2) * 2]
  if redis.call('EXISTS', ck) == 1 then
    alive[ARGV[i]] = ck
    any_alive = true
    local f = redis.call('HMGET', ck, 'head', 'fork')
    if f[1] then points[f[1]] = true end
    if f[2] then points[f[2]] = true end
    for _, v in ipairs(redis.call('HVALS', cpk)) do
      local mid = cjson.decode(v)['message_id']
      if type(mid) == 'string' then points[mid] = true end
    end
  else
    -- expired by Redis meanwhile: its messages are candidates too, in a new pass
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('DEL', cpk)
    redis.call('HSET', gc, 'cur', '0')
  end
end
if not any_alive then
  redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], mrefs, sums, gc, gct)
  return {1, 0}
end
-- covered message id -> ids of the summaries covering it (read on first need)
local covering = nil
local function drop_summaries(id)
  if covering == nil then
    covering = {}
    local all = redis.call('HGETALL', sums)
    for i = 1, #all, 2 do
      local mid = cjson.decode(all[i + 1])['covers_message_id']
      if type(mid) == 'string' then
        covering[mid] = covering[mid] or {}
        table.insert(covering[mid], all[i])
      end
    end
  end
  for _, sid in ipairs(covering[id] or {}) do redis.call('HDEL', sums, sid) end
end
-- A removed message takes its media references (`mrefs` members) with it.
local function drop_media_refs(id)
  local js = redis.call('HGET', KEYS[2], id)
  if not js or not string.find(js, '"media_id":"', 1, true) then return end
  local ok, doc = pcall(cjson.decode, js)
  if not ok or type(doc['parts']) ~= 'table' then return end
  for _, p in ipairs(doc['parts']) do
    local m = type(p) == 'table' and p['media'] or nil
    if type(m) == 'table' and type(m['media_id']) == 'string' then
      redis.call('ZREM', mrefs, m['media_id'] .. '\\0' .. id)
    end
  end
end
-- RFC 3339 text (pydantic's JSON of a datetime; no offset: UTC) -> µs since the epoch
local function micros(t)
  if type(t) ~= 'string' then return nil end
  local y, mo, d, h, mi, sec, rest = string.match(t,
    '^(%d+)-(%d+)-(%d+)[Tt ](%d+):(%d+):(%d+)(.*)$')
  if not y then return nil end
  local frac, off = string.match(rest, '^%.(%d+)(.*)$')
  if frac then frac = tonumber(string.sub(frac .. '00000', 1, 6)) else frac, off = 0, rest end
  local shift = 0
  if off ~= '' and off ~= 'Z' and off ~= 'z' then
    local sign, oh, om = string.match(off, '^([+-])(%d%d):?(%d%d)$')
    if not sign then return nil end
    shift = (tonumber(oh) * 60 + tonumber(om)) * 60
    if sign == '-' then shift = -shift end
  end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = mo > 2 and mo - 3 or mo + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  local s = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec) - shift
  return s * 1000000 + frac
end
-- A live writer's incarnation (`app.domain.incarnation.wrote`), read on first need: false
-- if it is not a fork (it wrote every message of its id), else its created_at in µs (a
-- fork made again under a deleted fork's id did not write the deleted one's messages).
local since = {}
local function fork_since(writer)
  local f = since[writer]
  if f == nil then
    local h = redis.call('HMGET', alive[writer], 'ca', 'fork', 'doc')
    f = false
    if h[2] then
      f = tonumber(h[1]) or micros(cjson.decode(h[3])['created_at']) or false
    else
      local doc = cjson.decode(h[3])
      if type(doc['forked_from']) == 'table' then
        f = tonumber(h[1]) or micros(doc['created_at']) or false
      end
    end
    since[writer] = f
  end
  return f
end
local removed = 0
local function try(id)
  if points[id] then return end
  local writer = redis.call('HGET', KEYS[4], id)
  if not writer then return end
  local start = false
  if alive[writer] then
    start = fork_since(writer)
    if not start then return end
  end
  local child = redis.call('ZRANGE', KEYS[5], '[' .. id .. '\\0', '(' .. id .. '\\1',
    'BYLEX', 'LIMIT', 0, 1)
  if #child > 0 then return end
  if start then  -- a live fork's unless dated before it (decoded only for such leaves)
    local ok, doc = pcall(cjson.decode, redis.call('HGET', KEYS[2], id) or '')
    local at = ok and type(doc) == 'table' and micros(doc['created_at']) or nil
    if at == nil or at >= start then return end
  end
  local parent = redis.call('HGET', KEYS[3], id) or ''
  drop_media_refs(id)
  drop_summaries(id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('ZREM', KEYS[5], parent .. '\\0' .. id)
  removed = removed + 1
  if parent ~= '' then redis.call('RPUSH', gct, parent) end
end
local budget = tonumber(ARGV[1])
while budget > 0 do
  local id = redis.call('LPOP', gct)
  if not id then break end
  budget = budget - 1
  try(id)
end
local cur = redis.call('HGET', gc, 'cur') or '0'
if budget > 0 and cur ~= 'done' then
  local r = redis.call('HSCAN', KEYS[4], cur, 'COUNT', budget)
  local items = r[2]
  for i = 1, #items, 2 do
    local writer = items[i + 1]
    if not alive[writer] or fork_since(writer) then try(items[i]) end
  end
  if r[1] == '0' then cur = 'done' else cur = r[1] end
  redis.call('HSET', gc, 'cur', cur)
end
follow_lineage_ttl(sums)
if cur == 'done' and redis.call('LLEN', gct) == 0 then
  redis.call('DEL', gc, gct)
  return {1, removed}
end
follow_lineage_ttl(gc)
follow_lineage_ttl(gct)
return {2, removed}
"""
)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Reclaimer:
    """Runs `STEP` on one lineage until its reclaim is done, and keeps the `gc:pending`
    zset of lineages whose reclaim may be unfinished."""

    def __init__(self, client: RedisClient, keys: RedisKeys, *, chunk: int = RECLAIM_CHUNK):
        self._client = client
        self._keys = keys
        self.chunk = chunk
        self._step = client.register_script(STEP)
        self._zrem_if_not_above = client.register_script(ZREM_IF_NOT_ABOVE)

    async def mark(self, lineage_id: str) -> int:
        """Before a deletion: the lineage may need reclaiming. Returns the mark's score,
        for `unmark`."""
        score = _now_ms()
        await self._client.zadd(self._keys.reclaim_pending, {lineage_id: score})
        return score

    async def unmark(self, lineage_id: str, score: int) -> None:
        """Done: drop the mark unless a later deletion renewed it."""
        await self._zrem_if_not_above(keys=[self._keys.reclaim_pending], args=[lineage_id, score])

    async def pending(self, limit: int) -> list[tuple[str, int]]:
        """Marked lineages, oldest mark first, with their scores."""
        rows = cast(
            list[tuple[str, float]],
            await self._client.zrange(self._keys.reclaim_pending, 0, limit - 1, withscores=True),
        )
        return [(str(lid), int(score)) for lid, score in rows]

    async def step(self, lk: LineageKeys) -> bool:
        """One chunk; True when nothing is left to reclaim in the lineage."""
        for _ in range(_ATTEMPTS):
            members = cast(list[str], await self._client.hkeys(lk.convs))
            keys = [*lk.fixed, lk.mrefs, lk.sums, lk.gc, lk.gct]
            for cid in members:
                keys += [lk.conv(cid), lk.cps(cid)]
            reply: list[Any] = await self._step(keys=keys, args=[self.chunk, *members])
            if reply[0] == -1:
                continue
            return bool(reply[0] != 2)
        raise StoreUnavailable(f"Lineage {lk.lineage_id!r} kept changing during a reclaim.")

    async def pending_in(self, lk: LineageKeys) -> bool:
        return bool(await self._client.exists(lk.gc))
