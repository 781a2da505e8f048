"""Turn locks in Redis: one key per conversation, `SET NX PX` with a random token.

Key `<prefix>lock:{<conversation_id>}` (prefix `parley:` by default) holds
`<token>:<run_id>` (the token is hex, so the first `:` splits them): the token makes
renew/release compare-and-act, the run id answers `holder()`. Key
`<prefix>lockseq:{<conversation_id>}` is the lock's acquisition counter (`LeaseLocks`,
*stamps*): `INCR`ed by every acquisition in the acquiring script, kept `SEQ_TTL_S` after
the last one (a memory bound only); when it is missing, the script restarts it from
Redis' clock in microseconds (`TIME`), above anything it held before. Every operation is
one Lua script or command on keys of one hash tag, so it is atomic on Redis and on Redis
Cluster. Waiting, renewal and cancellation safety are `LeaseLocks`'.
"""

from __future__ import annotations

from typing import Any

from app.coordination.lease_backend import Attempt, LeaseBackend, LeaseId, LeaseTiming
from app.coordination.lease_locks import LeaseLocks
from app.coordination.redis_client import RedisClient, unavailable

SEQ_TTL_S = 7 * 86400.0

# SET NX PX and the counter bumped; on failure the current value (who holds it), in the
# same round trip. A Lua function, so that another script can take the lock in its own
# step (`redis_run_scripts.CREATE_PUBLISH_LOCKING`): acquire(lock, seq, value, lease ms,
# seq ttl ms) -> {1, '', seq} | {0, holder's value, 0}.
ACQUIRE_FUNCTION = """
local function acquire(lock, counter, value, lease_ms, seq_ttl_ms)
  if redis.call('SET', lock, value, 'NX', 'PX', lease_ms) then
    local seq = redis.call('INCR', counter)
    if seq == 1 then
      local now = redis.call('TIME')
      seq = redis.call('INCRBY', counter, now[1] .. string.format('%06d', tonumber(now[2])))
    end
    redis.call('PEXPIRE', counter, seq_ttl_ms)
    return {1, '', seq}
  end
  return {0, redis.call('GET', lock) or '', 0}
end
"""

# KEYS: lock, seq. ARGV: value, lease ms, seq ttl ms.
_ACQUIRE = ACQUIRE_FUNCTION + "return acquire(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])\n"

# PEXPIRE only while the value is still ours: a lease that expired and was taken over
# is never extended on behalf of the old holder.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lock_key(prefix: str, conversation_id: str) -> str:
    return f"{prefix}lock:{{{conversation_id}}}"


def seq_key(prefix: str, conversation_id: str) -> str:
    return f"{prefix}lockseq:{{{conversation_id}}}"


def _value(lease: LeaseId) -> str:
    return f"{lease.token}:{lease.run_id}"


def _run_id(value: str | None) -> str | None:
    if not value:
        return None
    _, _, run_id = value.partition(":")
    return run_id or None


class RedisLeaseBackend(LeaseBackend):
    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def try_acquire(self, lease: LeaseId, lease_s: float) -> Attempt:
        keys, args = self._acquisition(lease, lease_s)
        with unavailable():
            reply: Any = await self._acquire(keys=keys, args=args)
        if int(reply[0]) == 1:
            return Attempt(True, seq=int(reply[2]))
        return Attempt(False, holder=_run_id(reply[1]))

    def _acquisition(self, lease: LeaseId, lease_s: float) -> tuple[list[str], list[str | int]]:
        """The keys and arguments of `acquire` (`ACQUIRE_FUNCTION`): lock, seq; value,
        lease ms, seq ttl ms."""
        keys = [
            lock_key(self._prefix, lease.conversation_id),
            seq_key(self._prefix, lease.conversation_id),
        ]
        return keys, [_value(lease), _ms(lease_s), _ms(SEQ_TTL_S)]

    def acquire_step(
        self, lease: LeaseId, lease_s: float, client: object
    ) -> tuple[list[str], list[str | int]] | None:
        return self._acquisition(lease, lease_s) if client is self._client else None

    async def renew(self, lease: LeaseId, lease_s: float) -> bool:
        key = lock_key(self._prefix, lease.conversation_id)
        with unavailable():
            reply = await self._renew(keys=[key], args=[_value(lease), _ms(lease_s)])
        return int(reply) == 1

    async def release(self, lease: LeaseId) -> bool:
        with unavailable():
            deleted = await self._release(
                keys=[lock_key(self._prefix, lease.conversation_id)], args=[_value(lease)]
            )
        return int(deleted) == 1

    def release_key(self, lease: LeaseId, client: object) -> tuple[str, str] | None:
        if client is not self._client:
            return None
        return lock_key(self._prefix, lease.conversation_id), _value(lease)

    async def holder(self, conversation_id: str) -> str | None:
        with unavailable():
            value = await self._client.get(lock_key(self._prefix, conversation_id))
        return _run_id(value if isinstance(value, str) else None)


class RedisTurnLocks(LeaseLocks):
    """Turn locks shared by every instance using the same Redis (see `LeaseLocks` for
    waiting, renewal and loss). The client is the caller's to close."""

    def __init__(
        self, client: RedisClient, timing: LeaseTiming | None = None, *, prefix: str = "parley:"
    ) -> None:
        super().__init__(RedisLeaseBackend(client, prefix), timing)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
