"""The Lua scripts of the Redis store.

Every script declares each key it touches in KEYS, and every key of one call shares a
hash tag (one lineage's `{<lineage_id>}`, one conversation's ref key, one index, or
`{packs}`), so each runs atomically on a single Redis Cluster node. Keys are computed by
the client from the lineage id (`redis_keys`).

Lineage scripts take KEYS[1..5] = convs, msg, par, wr, kids (`LineageKeys.fixed`) and,
when about one conversation, KEYS[6..7] = its hash and its checkpoints hash.

This module registers them all (`Scripts`) and holds the small ones (checkpoints, ref
keys, index entries, packs); a conversation's life in its lineage is in
`redis_scripts_lineage`, the message tree's in `redis_scripts_messages`.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from app.stores.redis_scripts_lineage import CREATE, DELETE, TOUCH, UPDATE
from app.stores.redis_scripts_messages import ANCESTOR, APPEND, CHILDREN, PATH

# KEYS: conv, cps. ARGV: checkpoint id, json, ca|'' (the incarnation it must find: its
# created_at in µs; a hash from before `ca` is any). The checkpoints expire with the
# conversation.
CHECKPOINT = """
local f = redis.call('HMGET', KEYS[1], 'tok', 'exp', 'ca')
if not f[1] then return 'NOTFOUND' end
if ARGV[3] ~= '' and f[3] and f[3] ~= ARGV[3] then return 'NOTFOUND' end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 'CONFLICT' end
if f[2] then
  redis.call('PEXPIREAT', KEYS[2], string.format('%.0f', math.ceil(tonumber(f[2]) / 1000)))
end
return 'OK'
"""

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
    ancestor: AsyncScript
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
            ancestor=r(ANCESTOR),
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
