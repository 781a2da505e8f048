"""The Lua scripts of `app.coordination.redis_runs` (the module docstring there says what
each key holds). Each touches the keys of one run only (one hash-tag slot), except
`INDEX`, which writes a conversation's index only, and `CREATE_PUBLISH_INDEXED`,
`CREATE_PUBLISH_LOCKING` and `END_RELEASING`, which write a run's keys and a
conversation's, and so run on a single server only.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.coordination.redis_locks import ACQUIRE_FUNCTION


@dataclass(frozen=True)
class RunKeys:
    """The keys of one run, in the order the scripts take them (KEYS[1..3])."""

    meta: str
    events: str
    record: str

    @classmethod
    def of(cls, prefix: str, run_id: str) -> RunKeys:
        base = f"{prefix}run:{{{run_id}}}"
        return cls(meta=f"{base}:meta", events=f"{base}:events", record=f"{base}:record")

    def all(self) -> list[str]:
        return [self.meta, self.events, self.record]


# KEYS: meta, events, record. ARGV: type, data, max_events, terminal (0/1),
# events ttl ms, record ttl ms, live ttl ms. One event: publish(type, data, terminal).
_PUBLISH_FUNCTION = """
local function publish(type_, data, terminal)
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-1',
             'type', type_, 'data', data)
  if redis.call('HEXISTS', KEYS[1], 'done') == 1 then
    return seq
  end
  if terminal == '1' then
    redis.call('HSET', KEYS[1], 'done', seq)
    redis.call('PEXPIRE', KEYS[2], ARGV[5])
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
    redis.call('PEXPIRE', KEYS[3], ARGV[6])
  else
    redis.call('PEXPIRE', KEYS[2], ARGV[7])
    redis.call('PEXPIRE', KEYS[1], ARGV[7])
    redis.call('PEXPIRE', KEYS[3], ARGV[7])
  end
  return seq
end
"""
PUBLISH = _PUBLISH_FUNCTION + "return publish(ARGV[1], ARGV[2], ARGV[4])\n"

# Several events of one run in order (`RunLog.publish_many`): KEYS and ARGV as `PUBLISH`
# for the first, then (type, data, terminal) from ARGV[8] on for each next one. Returns
# their seqs.
PUBLISH_MANY = (
    _PUBLISH_FUNCTION
    + """
local seqs = {publish(ARGV[1], ARGV[2], ARGV[4])}
for i = 8, #ARGV, 3 do
  seqs[#seqs + 1] = publish(ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
return seqs
"""
)

# The record written, then `PUBLISH` (whose expiries cover the record): one round trip
# for a run's creation with its first event, and for its end with its terminal event.
# KEYS and ARGV as `PUBLISH`, plus ARGV[8]: the record's JSON.
CREATE_PUBLISH = (
    """
redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[7])
"""
    + PUBLISH
)
SAVE_PUBLISH = (
    """
if redis.call('PTTL', KEYS[3]) > 0 then
  redis.call('SET', KEYS[3], ARGV[8], 'KEEPTTL')
else
  redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[7])
end
"""
    + PUBLISH
)

# The run's index entry (`runs-of`). KEYS: index. ARGV: run id, index ttl ms.
INDEX = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# `CREATE_PUBLISH` with the index entry, on a single server (one slot needed on a
# cluster). KEYS[4]: index; ARGV[9]: run id, ARGV[10]: index ttl ms.
CREATE_PUBLISH_INDEXED = (
    """
redis.call('SADD', KEYS[4], ARGV[9])
redis.call('PEXPIRE', KEYS[4], ARGV[10])
"""
    + CREATE_PUBLISH
)

# `CREATE_PUBLISH_INDEXED`, then one try at the turn lock of the run's conversation
# (`redis_locks.ACQUIRE_FUNCTION`), on a single server (the lock is another slot): a turn's
# creation and its lock in one round trip (`RunLog.create_and_publish_locking`).
# KEYS[5..6]: lock, lock counter; ARGV[11..13]: the lock's value, lease ms, counter ttl ms.
# Returns {seq, 1 if the lock was taken else 0, the lock's counter (0 if not taken)}.
CREATE_PUBLISH_LOCKING = (
    ACQUIRE_FUNCTION
    + """
local function create_publish()
"""
    + CREATE_PUBLISH_INDEXED
    + """
end
local seq = create_publish()
local lock = acquire(KEYS[5], KEYS[6], ARGV[11], ARGV[12], ARGV[13])
return {seq, lock[1], lock[3]}
"""
)

# An ended run's keys deleted: 1 (erased, or nothing left), 0 (live: no terminal event
# yet), 2 (a run of another lineage than ARGV[1], or of another incarnation than ARGV[2]:
# its `conversation_created_at` as the record's JSON writes it; when given, and a record
# without one matches). KEYS: meta, events, record.
ERASE_ENDED = """
local raw = redis.call('GET', KEYS[3])
if raw and (ARGV[1] ~= '' or ARGV[2] ~= '') then
  local rec = cjson.decode(raw)
  if ARGV[1] ~= '' and rec['lineage_id'] ~= ARGV[1] then return 2 end
  local at = rec['conversation_created_at']
  if ARGV[2] ~= '' and type(at) == 'string' and at ~= ARGV[2] then return 2 end
end
if raw and redis.call('HEXISTS', KEYS[1], 'done') == 0 then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
"""

# KEYS: meta, events, record. ARGV: first stream id wanted, count.
READ = """
local meta = redis.call('HMGET', KEYS[1], 'seq', 'done')
return {
  tonumber(meta[1] or '0'), tonumber(meta[2] or '0'),
  redis.call('EXISTS', KEYS[2]), redis.call('EXISTS', KEYS[3]),
  redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
}
"""

# KEYS: record. ARGV: json, live ttl ms. Keeps the expiry a terminal event set.
SAVE = """
if redis.call('PTTL', KEYS[1]) > 0 then
  return redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
end
return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
"""

# A run's end with its turn lock released first (`RunLog.save_and_publish_releasing`), on a
# single server (the lock's key is another slot). KEYS as `SAVE_PUBLISH`, plus KEYS[4]:
# the lock; ARGV as `SAVE_PUBLISH`, plus ARGV[9]: the lock's value (`redis_locks`'
# compare-and-delete). Returns {seq, 1 if the lock was deleted else 0}.
END_RELEASING = (
    """
local released = 0
if redis.call('GET', KEYS[4]) == ARGV[9] then
  released = redis.call('DEL', KEYS[4])
end
local function save_publish()
"""
    + SAVE_PUBLISH
    + """
end
return {save_publish(), released}
"""
)
