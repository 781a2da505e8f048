"""The Lua scripts of a lineage's messages: the compare-and-set append (every turn's
commit), the path walk and the children listing.

Separate from `redis_scripts` (the registry) and `redis_scripts_lineage` (a
conversation's life) because they read and write the message tree; `redis_messages` calls
them. KEYS[1..5] = convs, msg, par, wr, kids (`LineageKeys.fixed`), KEYS[6..7] = the
conversation's hash and its checkpoints hash.
"""

from __future__ import annotations

from app.stores.redis_scripts_lineage import _LINEAGE_TTL

# Compare-and-set append. Only the new messages are written (HSET of new fields, ZADD of
# new members); nothing proportional to the history is read or rewritten.
# ARGV: cid, now_us, expected_head|'', n, count, d_in, d_out, d_tot, d_cost, status|'',
#       user, pack (as the caller read them), created_at µs (the incarnation: a fork
#       made again under a deleted fork's id has its hash, `app.domain.incarnation`;
#       not compared on a hash written before `ca`), then per message: id, parent|'', writer,
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
local st = redis.call('HMGET', conv, 'tok', 'head', 'exp', 'ttl', 'user', 'pack', 'ca')
if not st[1] then return {'NOTFOUND'} end
if st[7] and st[7] ~= ARGV[13] then return {'NOTFOUND'} end
local now = tonumber(ARGV[2])
if st[3] and tonumber(st[3]) <= now then return {'NOTFOUND'} end
local n = tonumber(ARGV[4])
local first = 14
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

# KEYS: par. ARGV: message id, steps. The id `steps` parents up ('' when the path ends
# first or the id is unknown): `steps` + 1 HGETs of ids, no message data.
ANCESTOR = """
local id = ARGV[1]
local parent = redis.call('HGET', KEYS[1], id)
if not parent then return '' end
for _ = 1, tonumber(ARGV[2]) do
  if parent == '' then return '' end
  id = parent
  parent = redis.call('HGET', KEYS[1], id)
  if not parent then return '' end
end
return id
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
