"""Which *incarnation* of a conversation id a copy, a turn or a message belongs to.

Ids are reusable: a conversation deleted and created again under its id is another
conversation, and nothing of the deleted one may reach it (its turns in flight, its
messages, its runs and Idempotency-Keys). A conversation created or imported starts a
lineage of its own, so its lineage tells it from every earlier one under its id. A fork
keeps its source's lineage: a fork deleted and forked again under its id from the same
source has the deleted one's id AND lineage (outside tester T1). An incarnation is
therefore (id, lineage, `created_at`): `created_at` is stored on every backend, never
changes, and differs between two incarnations of one id in one lineage (the second is
created after the first was deleted). Existing rows need nothing new.

* Copies (the commit's compare-and-set, updates, a turn's conversation): equal
  (id, lineage, created_at), `same_incarnation`.
* Writes by id (a delete, a checkpoint, a context item): the caller names the
  `Incarnation` it read, and the store checks it in the step that writes (review R-A).
* Messages: a message records the id of the conversation that wrote it, not the
  incarnation. A conversation that is not a fork is the first of its id in its lineage,
  so every message of the lineage under its id is its own. A fork wrote those of its
  id created at or after it (`wrote`): the turn commits no message dated before its
  conversation (`not_before`, against clocks of instances that disagree).
* ETags: `"<version>.<incarnation>"` (`entity_tag`), so an `If-Match` read from a deleted
  conversation never holds for one created again under its id at the same version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from app.domain.conversation import Conversation
from app.domain.messages import Message


class Incarnation(NamedTuple):
    """The incarnation a store write by conversation id must find (with the id it is
    given): the lineage and `created_at` of the conversation the caller read. A write
    that finds another one under the id (a namesake created after that one was deleted)
    does nothing (`StateStore.delete_conversation`, `create_checkpoint`,
    `save_context_item`)."""

    lineage_id: str
    created_at: datetime

    @classmethod
    def of(cls, conversation: Conversation) -> Incarnation:
        return cls(conversation.lineage_id, conversation.created_at)

    def holds(self, conversation: Conversation) -> bool:
        """Whether `conversation` (stored under the id) is this incarnation."""
        return (
            conversation.lineage_id == self.lineage_id
            and conversation.created_at == self.created_at
        )


def same_incarnation(a: Conversation, b: Conversation) -> bool:
    """Whether `a` and `b` are copies of one incarnation (see the module docstring)."""
    return a.id == b.id and Incarnation.of(a).holds(b)


def wrote(conversation: Conversation, message: Message) -> bool:
    """Whether this incarnation of `conversation` wrote `message` (of its lineage)."""
    if message.conversation_id != conversation.id:
        return False
    return conversation.forked_from is None or message.created_at >= conversation.created_at


def not_before(conversation: Conversation, messages: Sequence[Message]) -> list[Message]:
    """`messages` with none dated before the conversation's creation (an instance whose
    clock is behind the one that forked it would otherwise date a message the fork wrote
    before the fork, and `wrote` would disown it)."""
    start = conversation.created_at
    return [
        m if m.created_at >= start else m.model_copy(update={"created_at": start}) for m in messages
    ]


def scope_tag(conversation: Conversation) -> str:
    """What names the incarnation in a key scope: its lineage, and for a fork its
    `created_at` too (in microseconds since the epoch, UTC)."""
    if conversation.forked_from is None:
        return conversation.lineage_id
    return f"{conversation.lineage_id}:{_micros(conversation.created_at)}"


def entity_tag(conversation: Conversation) -> str:
    """The opaque part of the conversation's ETag, `<version>.<incarnation>`: the
    incarnation is 12 hex digits of a hash of its lineage and `created_at` (review R4: with
    `"<version>"` alone, a conversation created again under a deleted one's id had the
    deleted one's tags, versions starting again at 1)."""
    name = f"{conversation.lineage_id}\0{_micros(conversation.created_at)}".encode()
    return f"{conversation.version}.{hashlib.blake2b(name, digest_size=6).hexdigest()}"


def _micros(at: datetime) -> int:
    """Microseconds since the epoch (naive: UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
