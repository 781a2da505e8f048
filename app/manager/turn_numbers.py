"""Turn numbers of committed messages (`Message.turn`): how many user messages the path
from the root to a message holds. Like `depth` it is fixed by the parent: a run reads the
number of the message it continues once (`turn_of`) and every message it creates gets the
same number (its user message's; one more than the parent's when it opens with a user
message), set at creation so that the events show what is committed. Auto checkpoints
(`app.manager.auto_checkpoints`) are made and pruned by it.

A parent stored before turn numbers existed has none: the path is then walked back, in
batches, to the nearest numbered message (or the root) and the user messages on the way
counted. That happens once per branch point among such old messages (the first turn after
them, an edit or regeneration under one); every message committed after carries its
number. Imports number every message (`number_turns`).

On a cold message cache (after a restart, on another instance) the parent is usually
numbered, so the first read is short (`FIRST_BATCH`) and what it reads goes into the cache:
it is the newest history, which the context walk of the same turn needs next. Reading
`WALK_BATCH` first cost ~25-33 ms of a cold turn on SQLite for one number (measured).
When the cache knows how long the lineage's last window was but no longer holds it (more
live windows than `PARLEY_MESSAGE_CACHE_MB` holds, taking turns in rotation), the first
read is that long, an eighth more: the walk then finds its window in the cache instead of
making a second read (bench/cache_cliff.py, 30 conversations of 400 messages on SQLite:
18.2/16.1 -> 14.2/13.8 ms server CPU per turn, loaded machine).
The batch sizes change what is read, never the number: the loop below counts the same
messages whatever they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain import Message, Role
from app.manager.message_cache import MAX_BATCH, MessageCache
from app.stores.base import StateStore

FIRST_BATCH = 64  # the context walk's first batch: what it would read next anyway
WALK_BATCH = 500  # later batches: only paths stored before turn numbers get there


def _step(turn: int, message: Message) -> int:
    return turn + 1 if message.role == Role.user else turn


def number_turns(messages: Sequence[Message]) -> list[Message]:
    """`messages` (a whole tree from its roots, parents first) with `turn` set from their
    path; a number a message already carries is replaced, since it follows from the path."""
    turns: dict[str, int] = {}
    out: list[Message] = []
    for m in messages:
        turn = _step(turns[m.parent_id] if m.parent_id is not None else 0, m)
        turns[m.id] = turn
        out.append(m.model_copy(update={"turn": turn}))
    return out


def first_batch(window_length: int | None) -> int:
    """The first read of `turn_of`: the last window's length and an eighth, at least
    `FIRST_BATCH`, at most `MAX_BATCH`."""
    if window_length is None:
        return FIRST_BATCH
    return max(FIRST_BATCH, min(MAX_BATCH, window_length + window_length // 8 + 1))


class TurnNumbers:
    def __init__(self, store: StateStore, cache: MessageCache) -> None:
        self._store = store
        self._cache = cache

    async def turn_of(self, lineage_id: str, message_id: str | None) -> int:
        """The turn number of a stored message (0 for no message: before the root)."""
        counted = 0
        cursor = message_id
        batch = first_batch(self._cache.window_length(lineage_id))
        while cursor is not None:
            cached = self._cache.get(lineage_id, cursor)
            if cached is not None and cached.message.turn is not None:
                return counted + cached.message.turn
            path = await self._store.get_path(lineage_id, cursor, limit=batch)
            if not path:
                return counted  # dangling parent: taken as the root, as the context does
            if cursor == message_id:
                self._cache.put(
                    lineage_id, path
                )  # the newest history: the context walk's next read
            batch = WALK_BATCH
            for m in path:  # newest first
                if m.turn is not None:
                    return counted + m.turn
                counted = _step(counted, m)
            cursor = path[-1].parent_id
        return counted
