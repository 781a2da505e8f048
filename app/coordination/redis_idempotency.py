"""Idempotency records in Redis, shared by every instance.

Key `<prefix>idem:{<scope>}:<key>` holds the JSON record with a native expiry. `reserve` is
`SET NX PX` plus, when the key is taken, the existing record in the same round trip (one
script: first writer wins, atomically). `forget` compares `ref` inside Redis (cjson) and
deletes only a record that still points at the caller's run, so a late cleanup can never
remove a record a retry reserved in the meantime.
"""

from __future__ import annotations

import json

from app.coordination.base import IdempotencyKeys, IdempotencyRecord
from app.coordination.redis_client import RedisClient, unavailable

_RESERVE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
return redis.call('GET', KEYS[1])
"""

_FORGET = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, record = pcall(cjson.decode, raw)
if ok and type(record) == 'table' and record['ref'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def idempotency_key(prefix: str, scope: str, key: str) -> str:
    return f"{prefix}idem:{{{scope}}}:{key}"


class RedisIdempotencyKeys(IdempotencyKeys):
    def __init__(self, client: RedisClient, *, prefix: str = "parley:") -> None:
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._forget = client.register_script(_FORGET)

    async def reserve(
        self, scope: str, key: str, record: IdempotencyRecord, *, ttl_s: float
    ) -> IdempotencyRecord | None:
        raw = json.dumps(
            {"fingerprint": record.fingerprint, "ref": record.ref, "extra": record.extra},
            separators=(",", ":"),
        )
        ttl_ms = max(1, round(ttl_s * 1000))
        with unavailable():
            existing = await self._reserve(
                keys=[idempotency_key(self._prefix, scope, key)], args=[raw, ttl_ms]
            )
        if existing is None:
            return None
        data = json.loads(existing)
        return IdempotencyRecord(
            fingerprint=data["fingerprint"], ref=data["ref"], extra=data.get("extra") or {}
        )

    async def forget(self, scope: str, key: str, *, ref: str) -> None:
        with unavailable():
            await self._forget(keys=[idempotency_key(self._prefix, scope, key)], args=[ref])
