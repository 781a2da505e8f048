"""The Lua scripts of a conversation's life in its lineage: create, update, touch, delete,
and the lineage expiry they all recompute (`_LINEAGE_TTL`).

Separate from `redis_scripts` (the registry, and the small scripts of refs, indexes,
checkpoints and packs) because these are the scripts that keep a lineage's keys and
expiry consistent; `redis_lineage` calls them. KEYS[1..5] = convs, msg, par, wr, kids
(`LineageKeys.fixed`), KEYS[6..7] = the conversation's hash and its checkpoints hash.
"""

from __future__ import annotations

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
local old = redis.call('HMGET', conv, 'tok', 'ver', 'user', 'pack', 'exp', 'ev', 'ca')
if not old[1] then return {'NOTFOUND'} end
local ndel = tonumber(ARGV[7])
if old[7] then  -- another incarnation (a fork made again under the id) is not this one
  for i = 8 + ndel, #ARGV, 2 do
    if ARGV[i] == 'ca' then
      if ARGV[i + 1] ~= old[7] then return {'NOTFOUND'} end
      break
    end
  end
end
if old[2] ~= ARGV[2] then return {'CONFLICT', old[2]} end
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

# Deletes one conversation; hands the messages it may leave unreachable to the chunked
# reclaim (`redis_reclaim.STEP`), or drops the whole lineage when nothing else is alive.
# KEYS: 1-5 fixed, 6 conv, 7 cps, then (conv, cps) of every other conversation of the
# lineage, as the client read them from `convs` (checked here: {-1} asks for a retry),
# then the lineage's `ctx`, `mrefs`, `sums`, `gc` and `gct` (the last five; `ctx`: the
# context items, dropped with their conversation).
# ARGV: cid, mode ('any' | 'expired' | 'stale'), now_us, tok|'', user|'', ca|'', ver|'',
# other ids... 'expired' deletes only if expired at now_us; 'stale' reclaims the messages
# of an incarnation Redis already expired (its `convs` entry is left, its hash is gone).
# `ca` (created_at in µs) names the incarnation to delete (a hash from before `ca` is any),
# `ver` the version it must be at.
# Returns {0} (nothing done), {-1}, {3, ver} (another version, nothing done), or
# {1, user, pack, tok, ca|''} / {2} (stale reclaimed).
# O(conversations of the lineage + their checkpoints), never O(messages).
DELETE = (
    _LINEAGE_TTL
    + """
local conv = KEYS[6]
local ctx = KEYS[#KEYS - 4]
local mrefs, sums, gc, gct = KEYS[#KEYS - 3], KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
local info = nil
if redis.call('EXISTS', conv) == 1 then
  local f = redis.call('HMGET', conv, 'tok', 'exp', 'user', 'pack', 'ca', 'ver')
  if ARGV[2] == 'stale' then return {0} end
  if ARGV[4] ~= '' and f[1] ~= ARGV[4] then return {0} end
  if ARGV[5] ~= '' and f[3] ~= ARGV[5] then return {0} end
  if ARGV[6] ~= '' and f[5] and f[5] ~= ARGV[6] then return {0} end
  if ARGV[7] ~= '' and f[6] ~= ARGV[7] then return {3, f[6] or ''} end
  if ARGV[2] == 'expired' and not (f[2] and tonumber(f[2]) <= tonumber(ARGV[3])) then
    return {0}
  end
  info = {1, f[3], f[4], f[1], f[5] or ''}
elseif ARGV[2] ~= 'stale' or redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return {0}
else
  info = {2}
end
local others = {}
local n_others = #ARGV - 7
for i = 8, #ARGV do others[ARGV[i]] = true end
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
for i = 8, #ARGV do
  local ck, cpk = KEYS[8 + (i - 8) * 2], KEYS[9 + (i - 8) * 2]
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
