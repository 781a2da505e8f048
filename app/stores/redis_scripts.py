"""The Lua scripts of the Redis store.

Every script declares each key it touches in KEYS, and every key of one call shares a
hash tag (one lineage's `{<lineage_id>}`, one conversation's ref key, one index, or
`{packs}`), so each runs atomically on a single Redis Cluster node. Keys are computed by
the client from the lineage id (`redis_keys`).

Lineage scripts take KEYS[1..5] = convs, msg, par, wr, kids (`LineageKeys.fixed`) and,
when about one conversation, KEYS[6..7] = its hash and its checkpoints hash.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

# Sets the expiry of the lineage's fixed keys to the latest expiry among its
# conversations (`convs` values, in ms), or removes it if one of them never expires.
_LINEAGE_TTL = """
local function lineage_ttl()
  local best = nil
  for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
    if v == '' then best = false break end
    local n = tonumber(v)
    if best == nil or n > best then best = n end
  end
  if best == nil then return end
  for i = 1, 5 do
    if best == false then redis.call('PERSIST', KEYS[i])
    else redis.call('PEXPIREAT', KEYS[i], string.format('%.0f', best)) end
  end
end
-- A lineage key outside KEYS[1..5] (the summaries and context items hashes) takes the
-- lineage's expiry.
local function follow_lineage_ttl(key)
  local ms = redis.call('PTTL', KEYS[1])
  if ms == -1 then redis.call('PERSIST', key) elseif ms > 0 then redis.call('PEXPIRE', key, ms) end
end
local function expire(key, ms)
  if ms == '' then redis.call('PERSIST', key) else redis.call('PEXPIREAT', key, ms) end
end
"""

# ARGV: cid, tok, exp_ms|'', updated_us, expires_us|'', exp member, field, value, ...
# KEYS[8..12], on one server only (`Indexes.script_keys`): idx:all, idx:user:<u>,
# idx:pack:<p>, idx:ids, idx:exp, written in the same script, so a created conversation
# is listable and erasable the moment it exists. On a cluster they are in other slots:
# the caller writes them before this script (see "Consistency model" in `redis`).
CREATE = (
    _LINEAGE_TTL
    + """
local function index()
  if #KEYS < 12 then return end
  redis.call('ZADD', KEYS[8], ARGV[4], ARGV[1])
  redis.call('ZADD', KEYS[9], ARGV[4], ARGV[1])
  redis.call('ZADD', KEYS[10], ARGV[4], ARGV[1])
  redis.call('ZADD', KEYS[11], 0, ARGV[1])
  if ARGV[5] ~= '' then redis.call('ZADD', KEYS[12], ARGV[5], ARGV[6]) end
end
local conv = KEYS[6]
if redis.call('EXISTS', conv) == 1 then
  local tok = redis.call('HGET', conv, 'tok')
  if tok == ARGV[2] then index() return {'OK'} end
  return {'LEFTOVER', tok or ''}
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'STALE'} end
redis.call('DEL', KEYS[7])
redis.call('HSET', conv, 'tok', ARGV[2], 'ev', '0', unpack(ARGV, 7))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[3] ~= '' then redis.call('PEXPIREAT', conv, ARGV[3]) end
lineage_ttl()
index()
return {'OK'}
"""
)

# ARGV: cid, expected_version, exp_ms|'', updated_us, expires_us|'', exp member, n_del,
#       del_field..., field, value, ...
# KEYS[8..12] on one server only, as for CREATE: the entries of the new user and pack are
# written here (an erasure of the new user finds it at once); the old ones are removed
# after the script (a stale entry of the old user is skipped by listing and erasure).
# The last two KEYS (after the index keys, if any): the lineage's summaries and context
# items hashes, which take the lineage's new expiry.
# Returns {'OK', old user, old pack, ev, exp_changed, tok} | {'NOTFOUND'} | {'CONFLICT', ver}
UPDATE = (
    _LINEAGE_TTL
    + """
local conv = KEYS[6]
local old = redis.call('HMGET', conv, 'tok', 'ver', 'user', 'pack', 'exp', 'ev')
if not old[1] then return {'NOTFOUND'} end
if old[2] ~= ARGV[2] then return {'CONFLICT', old[2]} end
local ndel = tonumber(ARGV[7])
if ndel > 0 then redis.call('HDEL', conv, unpack(ARGV, 8, 7 + ndel)) end
redis.call('HSET', conv, unpack(ARGV, 8 + ndel))
if #KEYS >= 12 then
  for i = 8, 10 do redis.call('ZADD', KEYS[i], ARGV[4], ARGV[1]) end
  redis.call('ZADD', KEYS[11], 0, ARGV[1])
  if ARGV[5] ~= '' then redis.call('ZADD', KEYS[12], ARGV[5], ARGV[6])
  else redis.call('ZREM', KEYS[12], ARGV[6]) end
end
local ev = old[6] or '0'
local changed = '0'
if redis.call('HGET', conv, 'exp') ~= old[5] then
  ev = tostring(redis.call('HINCRBY', conv, 'ev', 1))
  changed = '1'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
expire(KEYS[7], ARGV[3])
expire(conv, ARGV[3])
lineage_ttl()
follow_lineage_ttl(KEYS[#KEYS - 1])
follow_lineage_ttl(KEYS[#KEYS])
return {'OK', old[3], old[4], ev, changed, old[1]}
"""
)

# KEYS: 1-7 as usual, then the lineage's summaries and context items hashes.
# ARGV: cid, exp_us, exp_ms. Returns {ev, user, pack, tok}, or {} if the conversation is gone.
TOUCH = (
    _LINEAGE_TTL
    + """
local conv = KEYS[6]
local f = redis.call('HMGET', conv, 'tok', 'user', 'pack')
if not f[1] then return {} end
redis.call('HSET', conv, 'exp', ARGV[2])
local ev = redis.call('HINCRBY', conv, 'ev', 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIREAT', KEYS[7], ARGV[3])
redis.call('PEXPIREAT', conv, ARGV[3])
lineage_ttl()
for i = 8, #KEYS do follow_lineage_ttl(KEYS[i]) end
return {tostring(ev), f[2], f[3], f[1]}
"""
)

# Compare-and-set append. Only the new messages are written (HSET of new fields, ZADD of
# new members); nothing proportional to the history is read or rewritten.
# ARGV: cid, now_us, expected_head|'', n, count, d_in, d_out, d_tot, d_cost, status|'',
#       user, pack (as the caller read them), then per message: id, parent|'', writer,
#       json; then the media references of the messages as "<media id>\\0<message id>"
#       members of KEYS[8] (the lineage's `mrefs`).
# KEYS[9..10]: the lineage's summaries and context items hashes (take the lineage's
# expiry). KEYS[11..14], on one server only (`Indexes.score_keys`): idx:all, idx:user:<u>,
# idx:pack:<p>, idx:ids of ARGV's user and pack, re-scored here when the conversation
# still has that user and pack and no sliding TTL (else the caller writes the index
# after the script, as on a cluster).
# Returns {'OK', HGETALL of the conversation, '1' if indexed here else '0'} |
#         {'NOTFOUND'} | {'HEAD'} | {'DUP'}
APPEND = (
    _LINEAGE_TTL
    + """
local conv = KEYS[6]
local st = redis.call('HMGET', conv, 'tok', 'head', 'exp', 'ttl', 'user', 'pack')
if not st[1] then return {'NOTFOUND'} end
local now = tonumber(ARGV[2])
if st[3] and tonumber(st[3]) <= now then return {'NOTFOUND'} end
local n = tonumber(ARGV[4])
local first = 13
local last = first + 4 * (n - 1)
if (st[2] or '') ~= ARGV[3] then
  -- The same append already committed (a retried call): report its result.
  if st[2] == ARGV[last] and redis.call('HGET', KEYS[2], ARGV[last]) == ARGV[last + 3] then
    return {'OK', redis.call('HGETALL', conv), '0'}
  end
  return {'HEAD'}
end
local seen = {}
for i = first, last, 4 do
  if seen[ARGV[i]] or redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then return {'DUP'} end
  seen[ARGV[i]] = true
end
for i = first, last, 4 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 3])
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[5], 0, ARGV[i + 1] .. '\\0' .. ARGV[i])
end
for i = last + 4, #ARGV do redis.call('ZADD', KEYS[8], 0, ARGV[i]) end
redis.call('HSET', conv, 'head', ARGV[last], 'count', ARGV[5], 'upd', ARGV[2])
redis.call('HINCRBY', conv, 'ver', 1)
redis.call('HINCRBY', conv, 'in', ARGV[6])
redis.call('HINCRBY', conv, 'out', ARGV[7])
redis.call('HINCRBY', conv, 'tot', ARGV[8])
local cost = tonumber(redis.call('HGET', conv, 'cost')) + tonumber(ARGV[9])
redis.call('HSET', conv, 'cost', string.format('%.17g', cost))
if ARGV[10] ~= '' then redis.call('HSET', conv, 'status', ARGV[10]) end
if st[4] then
  local exp_us = now + tonumber(st[4]) * 1000000
  local exp_ms = string.format('%.0f', math.ceil(exp_us / 1000))
  redis.call('HSET', conv, 'exp', string.format('%.0f', exp_us))
  redis.call('HINCRBY', conv, 'ev', 1)
  redis.call('HSET', KEYS[1], ARGV[1], exp_ms)
  redis.call('PEXPIREAT', conv, exp_ms)
  redis.call('PEXPIREAT', KEYS[7], exp_ms)
end
lineage_ttl()
follow_lineage_ttl(KEYS[9])
follow_lineage_ttl(KEYS[10])
local indexed = '0'
if #KEYS >= 14 and not st[4] and st[5] == ARGV[11] and st[6] == ARGV[12] then
  for i = 11, 13 do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1]) end
  redis.call('ZADD', KEYS[14], 0, ARGV[1])
  indexed = '1'
end
return {'OK', redis.call('HGETALL', conv), indexed}
"""
)

# KEYS: par, msg. ARGV: message id, limit. The path newest first, `limit` HGETs.
PATH = """
local ids = {}
local id = ARGV[1]
local limit = tonumber(ARGV[2])
while #ids < limit do
  local parent = redis.call('HGET', KEYS[1], id)
  if not parent then break end
  ids[#ids + 1] = id
  if parent == '' then break end
  id = parent
end
local out = {}
for i = 1, #ids, 1000 do
  local chunk = redis.call('HMGET', KEYS[2], unpack(ids, i, math.min(i + 999, #ids)))
  for _, v in ipairs(chunk) do out[#out + 1] = v end
end
return out
"""

# KEYS: kids, msg. ARGV: parent id ('' for the roots).
CHILDREN = """
local p = ARGV[1]
local members = redis.call('ZRANGE', KEYS[1], '[' .. p .. '\\0', '(' .. p .. '\\1', 'BYLEX')
local out = {}
for i = 1, #members, 1000 do
  local ids = {}
  for j = i, math.min(i + 999, #members) do ids[#ids + 1] = string.sub(members[j], #p + 2) end
  for _, v in ipairs(redis.call('HMGET', KEYS[2], unpack(ids))) do out[#out + 1] = v end
end
return out
"""

# KEYS: conv, cps. ARGV: checkpoint id, json. The checkpoints expire with the conversation.
CHECKPOINT = """
local f = redis.call('HMGET', KEYS[1], 'tok', 'exp')
if not f[1] then return 'NOTFOUND' end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 'CONFLICT' end
if f[2] then
  redis.call('PEXPIREAT', KEYS[2], string.format('%.0f', math.ceil(tonumber(f[2]) / 1000)))
end
return 'OK'
"""

# Deletes one conversation; hands the messages it may leave unreachable to the chunked
# reclaim (`redis_reclaim.STEP`), or drops the whole lineage when nothing else is alive.
# KEYS: 1-5 fixed, 6 conv, 7 cps, then (conv, cps) of every other conversation of the
# lineage, as the client read them from `convs` (checked here: {-1} asks for a retry),
# then the lineage's `ctx`, `mrefs`, `sums`, `gc` and `gct` (the last five; `ctx`: the
# context items, dropped with their conversation).
# ARGV: cid, mode ('any' | 'expired' | 'stale'), now_us, tok|'', user|'', other ids...
# 'expired' deletes only if expired at now_us; 'stale' reclaims the messages of an
# incarnation Redis already expired (its `convs` entry is left, its hash is gone).
# Returns {0} (nothing done), {-1}, or {1, user, pack, tok} / {2} (stale reclaimed).
# O(conversations of the lineage + their checkpoints), never O(messages).
DELETE = (
    _LINEAGE_TTL
    + """
local conv = KEYS[6]
local ctx = KEYS[#KEYS - 4]
local mrefs, sums, gc, gct = KEYS[#KEYS - 3], KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
local info = nil
if redis.call('EXISTS', conv) == 1 then
  local f = redis.call('HMGET', conv, 'tok', 'exp', 'user', 'pack')
  if ARGV[2] == 'stale' then return {0} end
  if ARGV[4] ~= '' and f[1] ~= ARGV[4] then return {0} end
  if ARGV[5] ~= '' and f[3] ~= ARGV[5] then return {0} end
  if ARGV[2] == 'expired' and not (f[2] and tonumber(f[2]) <= tonumber(ARGV[3])) then
    return {0}
  end
  info = {1, f[3], f[4], f[1]}
elseif ARGV[2] ~= 'stale' or redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return {0}
else
  info = {2}
end
local others = {}
local n_others = #ARGV - 5
for i = 6, #ARGV do others[ARGV[i]] = true end
local members = redis.call('HKEYS', KEYS[1])
local count = 0
for _, m in ipairs(members) do
  if m ~= ARGV[1] then
    if not others[m] then return {-1} end
    count = count + 1
  end
end
if count ~= n_others then return {-1} end

redis.call('UNLINK', conv, KEYS[7])
redis.call('HDEL', KEYS[1], ARGV[1])
local any_alive = false
local alive = {}
for i = 6, #ARGV do
  local ck, cpk = KEYS[8 + (i - 6) * 2], KEYS[9 + (i - 6) * 2]
  if redis.call('EXISTS', ck) == 1 then
    any_alive = true
    alive[ARGV[i]] = true
  else
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('DEL', cpk)
  end
end
if not any_alive then
  -- UNLINK: the lineage's hashes are freed in the background, so this is O(1) here
  -- however many messages the lineage holds.
  redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ctx, mrefs, sums, gc, gct)
  return info
end
-- the context items of every conversation that is not alive go (O(items of the lineage))
for _, field in ipairs(redis.call('HKEYS', ctx)) do
  local sep = string.find(field, '\0', 1, true)
  if not sep or not alive[string.sub(field, 1, sep - 1)] then redis.call('HDEL', ctx, field) end
end
-- a new pass over the lineage's messages: this deletion's are candidates from now on
redis.call('HSET', gc, 'cur', '0')
lineage_ttl()
follow_lineage_ttl(sums)
follow_lineage_ttl(ctx)
follow_lineage_ttl(gc)
follow_lineage_ttl(gct)
return info
"""
)

# --- ref key (one slot per conversation id) ---------------------------------------------

# KEYS: ref. ARGV: lineage, tok, now_ms. {'OK'} or {'TAKEN', lineage, tok, claim_ms, s}.
CLAIM = """
local f = redis.call('HMGET', KEYS[1], 'l', 't', 'c', 's')
if f[2] then
  if f[2] == ARGV[2] then return {'OK'} end
  return {'TAKEN', f[1] or '', f[2], f[3] or '0', f[4] or '0'}
end
redis.call('HSET', KEYS[1], 'l', ARGV[1], 't', ARGV[2], 'c', ARGV[3], 's', '0', 'ev', '0')
return {'OK'}
"""

# Mirrors the conversation's expiry (plus a grace period) onto its ref key and marks the
# claim committed. Expiry versions make concurrent mirrors converge on the newest.
# KEYS: ref. ARGV: tok, ev, exp_ms|''.
MIRROR = """
local f = redis.call('HMGET', KEYS[1], 't', 'ev')
if f[1] ~= ARGV[1] then return 0 end
if tonumber(f[2] or '0') > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 's', '1', 'ev', ARGV[2])
if ARGV[3] == '' then redis.call('PERSIST', KEYS[1])
else redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return 1
"""

# KEYS: ref. ARGV: tok. Deletes the ref only if it is still that incarnation's.
RELEASE = """
if redis.call('HGET', KEYS[1], 't') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: index. ARGV: member, max_score. Removes a stale entry unless it was re-scored.
ZREM_IF_NOT_ABOVE = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS: docs, order. ARGV: field, json. {1} stored, or {0, the stored json}.
PACK_SAVE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return {1}
end
return {0, redis.call('HGET', KEYS[1], ARGV[1])}
"""

# KEYS: docs, order.
PACK_LIST = """
local fields = redis.call('LRANGE', KEYS[2], 0, -1)
if #fields == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(fields))
"""


@dataclass(frozen=True)
class Scripts:
    """The scripts registered on one client (EVALSHA; reloaded after NOSCRIPT)."""

    create: AsyncScript
    update: AsyncScript
    touch: AsyncScript
    append: AsyncScript
    path: AsyncScript
    children: AsyncScript
    checkpoint: AsyncScript
    delete: AsyncScript
    claim: AsyncScript
    mirror: AsyncScript
    release: AsyncScript
    zrem_if_not_above: AsyncScript
    pack_save: AsyncScript
    pack_list: AsyncScript

    @classmethod
    def register(cls, client: Redis | RedisCluster) -> Scripts:
        """No I/O: scripts are loaded on first use."""
        r = client.register_script
        return cls(
            create=r(CREATE),
            update=r(UPDATE),
            touch=r(TOUCH),
            append=r(APPEND),
            path=r(PATH),
            children=r(CHILDREN),
            checkpoint=r(CHECKPOINT),
            delete=r(DELETE),
            claim=r(CLAIM),
            mirror=r(MIRROR),
            release=r(RELEASE),
            zrem_if_not_above=r(ZREM_IF_NOT_ABOVE),
            pack_save=r(PACK_SAVE),
            pack_list=r(PACK_LIST),
        )
