"""A bounded cache of stored media as provider requests carry it (base64 text).

Why: a stored (externalized) image is referenced by every later turn whose context window
still holds its message, and each of those turns needs the bytes base64-encoded in the
provider request. Without a cache that is a disk read plus an encoding per image per turn
(the media benchmark measured turns several times slower than with inline media). The
cache keeps the encoded text of the most recently used blobs, keyed by sha256 (so the same
bytes sent by several users or conversations are one entry), bounded by
`PARLEY_MEDIA_CACHE_MB` counted in encoded characters; least recently used entries go
first, and a blob larger than the whole budget is never cached. `0` disables it.

Blobs are immutable (content-addressed), so an entry can never be stale; a blob deleted
from the store may stay cached until evicted, which is harmless: it is only reachable
through a reference, and a deleted blob has none.
"""

from __future__ import annotations

from collections import OrderedDict


class EncodedMediaCache:
    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sha256: str) -> str | None:
        found = self._entries.get(sha256)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(sha256)
        self.hits += 1
        return found

    def put(self, sha256: str, encoded: str) -> None:
        size = len(encoded)
        if size > self._max or sha256 in self._entries:
            return
        while self._entries and self._bytes + size > self._max:
            _, old = self._entries.popitem(last=False)
            self._bytes -= len(old)
        self._entries[sha256] = encoded
        self._bytes += size
