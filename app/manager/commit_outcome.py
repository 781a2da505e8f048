"""Whether a commit whose answer was lost landed (README: "The commit is the truth").

A store call can raise `StoreUnavailable` after the server committed it: the call's
timeout (`PARLEY_STORE_TIMEOUT_S`) fires while COMMIT is on the wire, or the connection
drops before its reply. Recording such a turn as `failed` would tell the client to retry
and store it twice. So the executor re-reads the store: one commit appends the turn's
messages in one transaction, so its last message being stored with the run's id means
all of them were committed (message ids are new to each run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from app.domain import Message
from app.errors import StoreUnavailable
from app.stores.base import StateStore

log = logging.getLogger("parley.turns")

CHECK_TRIES = 3


async def commit_landed(
    store: StateStore,
    lineage_id: str,
    messages: Sequence[Message],
    within_s: float,
) -> bool:
    """True when `messages` (one commit of their run) are in the store. Up to
    `CHECK_TRIES` reads spread over about `within_s` (a commit still finishing on the
    server may show on a later read), all of them within `within_s` in total: against
    a store that does not answer, each read could otherwise take the whole store
    timeout, delaying the run's failure (and its 503) by several. False when none
    found them, none answered, or the time ran out."""
    if not messages:
        return False
    try:
        async with asyncio.timeout(within_s):
            return await _check(store, lineage_id, messages, within_s)
    except TimeoutError:
        log.debug("run %s: commit check ran out of time", messages[-1].run_id)
        return False


async def _check(
    store: StateStore, lineage_id: str, messages: Sequence[Message], within_s: float
) -> bool:
    last, run_id = messages[-1].id, messages[-1].run_id
    pause = within_s / (2 * CHECK_TRIES)
    for attempt in range(1, CHECK_TRIES + 1):
        try:
            found = await store.get_messages(lineage_id, [last])
        except StoreUnavailable as exc:
            log.debug("run %s: commit check %d unanswered: %r", run_id, attempt, exc)
        else:
            if found and found[0].run_id == run_id:
                log.warning("run %s: its commit landed though the call failed", run_id)
                return True
        if attempt < CHECK_TRIES:
            await asyncio.sleep(pause)
    return False
