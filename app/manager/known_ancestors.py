"""Which messages this instance has seen to be ancestors of which (review R8).

"Message `a` is on the path ending at message `t` of lineage `l`" never stops being true:
messages are immutable and a message id is never reused within a lineage (DESIGN §3: any
cache keyed by message id is always correct). Paging a conversation's messages learns such
facts for free: every message of a page lies on the path of the message the page started
from. Remembering the oldest one (the page's `next_cursor`) lets the next page's
visibility check be a dictionary lookup instead of a walk from the head or the fork point
(`StateStore.ancestor_id`, `steps` lookups: tens of ms at 10,000 messages).

A bounded LRU of (lineage, tip, ancestor) triples; a miss (another instance served the
previous page, or it was evicted) costs the walk, never a wrong answer.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_FACTS = 4096  # one per paging client in flight; ~0.2 KB each


class KnownAncestors:
    def __init__(self, max_facts: int = MAX_FACTS) -> None:
        self._max = max_facts
        self._facts: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def knows(self, lineage_id: str, tip_id: str, ancestor_id: str) -> bool:
        """Whether `ancestor_id` was seen on the path ending at `tip_id`."""
        key = (lineage_id, tip_id, ancestor_id)
        if key not in self._facts:
            return False
        self._facts.move_to_end(key)
        return True

    def remember(self, lineage_id: str, tip_id: str, ancestor_id: str) -> None:
        """`ancestor_id` is on the path ending at `tip_id` (or is it)."""
        if self._max <= 0:
            return
        self._facts[(lineage_id, tip_id, ancestor_id)] = None
        self._facts.move_to_end((lineage_id, tip_id, ancestor_id))
        while len(self._facts) > self._max:
            self._facts.popitem(last=False)

    def __len__(self) -> int:
        return len(self._facts)
