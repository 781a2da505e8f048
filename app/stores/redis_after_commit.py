"""The bookkeeping that follows a committed Redis script (index entries, a ref's expiry,
index clean-up), shared by the conversation and message calls of `RedisStore`.

Its own module because it is a rule of the store's consistency model (`app.stores.redis`:
indexes and refs tolerate a lost update), not part of any one kind of record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from redis.exceptions import RedisError

from app.stores.redis_conn import UNAVAILABLE_ERRORS, reset_transport

log = logging.getLogger("parley.stores.redis")


async def after_commit(*steps: Awaitable[Any]) -> None:
    """Bookkeeping after a script committed (index entries, the ref's expiry, index
    clean-up): a failure is logged, not raised, because the write itself is done and
    both indexes and refs tolerate a lost update (see the module doc)."""
    for result in await asyncio.gather(*steps, return_exceptions=True):
        if isinstance(result, (RedisError, *UNAVAILABLE_ERRORS)) or reset_transport(result):
            log.warning("index/ref update after a commit failed: %r", result)
        elif isinstance(result, BaseException):
            raise result
