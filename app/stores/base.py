"""The `StateStore` ABC: the only persistence seam (DESIGN §4).

Contract, shared by every backend and enforced by `tests/contract/`:

* Conversations are stored whole (`Conversation` model). `version` is the optimistic
  concurrency token: every write that changes a conversation increments it by exactly one.
* Messages are immutable once appended and are addressed within a *lineage* (the set of
  conversations that share ancestry through forks; `Conversation.lineage_id`). Every
  message method takes the lineage id, so a backend may co-locate a lineage's data
  (Redis uses it as the hash tag) and so a message id from another lineage is never visible.
* `append_messages` is the only way the head moves forward during a turn. It is atomic:
  either every message is stored *and* the head, `message_count`, usage totals, `version`,
  `updated_at` and `expires_at` change together, or nothing changes.
* An expired conversation (`expires_at <= now`) is invisible to `get_conversation` and
  `list_conversations` from that instant, whether or not its data was reclaimed yet.
* Reads never cost O(history): `get_path` is bounded by `limit`, `ancestor_id` by
  `steps` (and reads ids only), listing is bounded by `limit`, append is O(messages
  appended).
* Backend failures that mean "the store is unreachable" raise `StoreUnavailable`.
* Media records and references: `app.stores.base_media` (the `MediaRecords` part).
* Summaries (`Summary`, context strategy `summarize`) belong to a lineage and point at the
  message they cover. `save_summary` refuses (`MessageNotFound`, storing nothing) when
  that message is not stored in the lineage. A summary goes when its covered message is
  deleted (by the deletion rule above, or with the whole lineage), so nothing of a
  deleted history is left behind in a summary.
* Context items (`ContextItem`) belong to one conversation: `save_context_item` refuses
  (`ConversationNotFound`, storing nothing) when it is not stored, and they go with it
  (deletion, expiry: on Redis they follow the lineage's expiry, which outlives the
  conversation's, and a read finds none once the conversation is gone).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from app.domain import (
    Checkpoint,
    Conversation,
    ConversationStatus,
    Message,
    Page,
    Usage,
)
from app.domain.context_item import ContextItem
from app.domain.filters import ConversationFilter as ConversationFilter
from app.domain.filters import metadata_text as metadata_text
from app.domain.incarnation import Incarnation
from app.domain.pagination import decode_cursor as decode_cursor
from app.domain.pagination import encode_cursor as encode_cursor
from app.domain.summary import Summary
from app.stores.base_media import MediaRecords

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class StoreCapabilities:
    """What a backend can do, so callers and tests branch on capability, not on class.

    native_ttl: the backend reclaims expired conversations by itself (`purge_expired` is a
        no-op that returns 0).
    shared: state is visible to other processes using the same URL (memory is not).
    sql_coordination: the store's database can also hold the coordination tables (turn
        leases, idempotency records, run records and events, `app.coordination.sql`);
        `StateStore.sql_engine()` returns its opened engine.
    """

    native_ttl: bool = False
    shared: bool = True
    sql_coordination: bool = False


class DeletedConversation(NamedTuple):
    """A conversation `delete_user_conversations` deleted: its id, its lineage and its
    `created_at` (what erasing its runs needs: an id may since name a conversation of
    another lineage, or a fork made again in its lineage; `app.domain.incarnation`).
    `created_at` None: not known (a Redis hash written before `ca`): runs told by lineage."""

    conversation_id: str
    lineage_id: str
    created_at: datetime | None = None


def media_references(messages: Sequence[Message]) -> list[tuple[str, str]]:
    """(message id, media id) of every stored media reference the messages carry, once
    each: what `append_messages` records and deletion drops."""
    refs: dict[tuple[str, str], None] = {}
    for m in messages:
        for part in m.parts:
            if part.media is not None and part.media.media_id:
                refs[(m.id, part.media.media_id)] = None
    return list(refs)


class StateStore(MediaRecords, ABC):
    """Persistence of conversations, their message trees and checkpoints (and, from
    `MediaRecords`, media records)."""

    capabilities: StoreCapabilities = StoreCapabilities()

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and bring the schema up to date (SQL: Alembic upgrade to head)."""

    async def close(self) -> None:
        """Release connections. Idempotent."""

    @abstractmethod
    async def ping(self) -> None:
        """Return if the backend answers; raise `StoreUnavailable` otherwise."""

    def sql_engine(self) -> AsyncEngine:
        """The opened SQLAlchemy engine of a store with `capabilities.sql_coordination`
        (after `open()`), on which the SQL coordinator keeps its tables. The engine stays
        the store's: whoever uses it must not dispose of it."""
        raise NotImplementedError(f"{type(self).__name__} has no SQL engine")

    def connection_limit(self) -> int | None:
        """How many calls to this store (and the coordination sharing its connections) can
        be in flight at once when that is bounded by a pool much smaller than the
        concurrency an instance serves (PostgreSQL: `pool_size + max_overflow`), else None.
        The admission gate sizes itself by it (`app.manager.admission.gate_size`)."""
        return None

    def sql_write_lock(self) -> asyncio.Lock | None:
        """The lock this store's write transactions queue on when its database takes one
        writer at a time (SQLite), else None. Whoever else writes to `sql_engine()` (the
        SQL coordinator) must take it around each write transaction: a writer that does
        not waits for SQLite's lock in its busy handler instead, sleeping up to 100 ms
        between attempts while the queued ones pass, and holds a pooled connection all
        that time."""
        return None

    # --- conversations -----------------------------------------------------------------

    @abstractmethod
    async def create_conversation(self, conversation: Conversation) -> Conversation:
        """Store a new conversation as given (its `version` is kept, normally 1).

        Raises `ConversationExists` if a live (unexpired) conversation has the id. An expired
        one with the same id is replaced (its data reclaimed first)."""

    @abstractmethod
    async def get_conversation(self, conversation_id: str, *, now: datetime) -> Conversation | None:
        """The conversation, or None if absent or expired at `now`."""

    @abstractmethod
    async def update_conversation(
        self, conversation: Conversation, *, expected_version: int
    ) -> Conversation:
        """Replace the stored conversation with `conversation`, with `version` set to
        `expected_version + 1`, only if the stored version is `expected_version`.

        Raises `VersionConflict` if it is not, `ConversationNotFound` if absent or if the
        stored one is of another lineage (a namesake created after `conversation` was
        deleted: ids are reusable). Returns the stored result."""

    @abstractmethod
    async def touch_conversation(self, conversation_id: str, expires_at: datetime) -> None:
        """Move `expires_at` (sliding TTL on reads) without changing `version` or
        `updated_at`. A missing conversation is ignored."""

    @abstractmethod
    async def delete_conversation(
        self,
        conversation_id: str,
        *,
        incarnation: Incarnation | None = None,
        expected_version: int | None = None,
    ) -> bool:
        """Delete the conversation, its checkpoints, and every message it wrote that no
        other conversation of its lineage can still reach (from that conversation's head,
        its checkpoints or its fork point). True if it deleted it.

        With `incarnation`, only that incarnation is deleted: when the id names another
        one (a namesake created after it was deleted: ids are reusable) or none, nothing
        is deleted and the answer is False. With `expected_version`, raises
        `VersionConflict` (nothing deleted) when the stored version is another. Both are
        checked in the step that deletes, so a delete that read a conversation never
        deletes anything else (review R-A)."""

    @abstractmethod
    async def delete_user_conversations(self, user_id: str) -> list[DeletedConversation]:
        """Delete every conversation of `user_id` as `delete_conversation` does; return
        the deleted ones, ordered by id."""

    @abstractmethod
    async def list_conversations(
        self,
        flt: ConversationFilter,
        *,
        now: datetime,
        limit: int,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        """Live conversations matching `flt`, ordered by `updated_at` desc then `id` desc.

        `next_cursor` is set when more may follow; passing it back continues after the last
        item. Raises `InvalidCursor` for a cursor this backend did not issue."""

    @abstractmethod
    async def footprint(self, lineage_id: str, conversation_ids: Sequence[str]) -> dict[str, int]:
        """For tests and ops: how many rows (SQL), entries (memory) or keys and index
        entries (Redis) the store holds for this lineage and these conversations of it,
        by kind (conversations, messages, checkpoints, media_refs, summaries, context_items,
        plus what a
        backend keeps besides: Redis counts every key under the lineage's hash tag, the
        ref keys and the listing index entries of the ids). Every count is zero once
        every conversation of the lineage is deleted. Costs O(what it counts); not for
        request paths."""

    # --- messages ----------------------------------------------------------------------

    @abstractmethod
    async def append_messages(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        *,
        usage: Usage,
        cost_usd: float,
        now: datetime,
        status: ConversationStatus | None = None,
    ) -> Conversation:
        """Atomically store `messages` and move the head to the last of them.

        Compare-and-set: commits only if the stored head still equals
        `conversation.head_message_id`; otherwise raises `HeadConflict` and stores nothing.
        `messages` are given in order; the first one's parent is an existing message of the
        lineage (normally the head; a sibling for edits/regenerations) or None. On success
        the stored conversation gets: `head_message_id` = last id, `message_count` = last
        depth + 1, `usage` += (usage, cost_usd), `version` += 1, `updated_at` = now,
        `expires_at` = now + ttl_seconds when `ttl_seconds` is set, and `status` when given.
        Other fields are left as stored (a concurrent metadata PATCH is not overwritten).
        Raises `ConversationNotFound` if the conversation is gone. Returns the new state."""

    @abstractmethod
    async def get_messages(self, lineage_id: str, message_ids: Sequence[str]) -> list[Message]:
        """The messages with these ids in the lineage, in the order asked; unknown ids are
        left out."""

    @abstractmethod
    async def get_path(self, lineage_id: str, message_id: str, *, limit: int) -> list[Message]:
        """The path ending at `message_id`, newest first: the message, its parent, ... up
        to `limit` messages (fewer when the root is reached). Empty if unknown."""

    @abstractmethod
    async def ancestor_id(self, lineage_id: str, message_id: str, *, steps: int) -> str | None:
        """The id of the message `steps` parent links above `message_id` (0: itself), None
        when the path ends first or `message_id` is unknown. Ids only: it follows parent
        links without reading any message's data, `steps` lookups (the cheap form of "is
        this message an ancestor of that one", which `get_path` would answer by reading
        every message between them)."""

    @abstractmethod
    async def list_children(self, lineage_id: str, parent_id: str | None) -> list[Message]:
        """Messages whose parent is `parent_id` (roots of the lineage for None), oldest
        first."""

    async def children_of(
        self, lineage_id: str, parent_ids: Sequence[str]
    ) -> dict[str, list[Message]]:
        """`list_children` of each of these parents (oldest first), keyed by parent id;
        parents without children may be left out. Backends may answer in one round trip;
        this default asks once per parent."""
        out: dict[str, list[Message]] = {}
        for parent_id in dict.fromkeys(parent_ids):
            kids = await self.list_children(lineage_id, parent_id)
            if kids:
                out[parent_id] = kids
        return out

    # --- checkpoints -------------------------------------------------------------------

    @abstractmethod
    async def create_checkpoint(
        self, checkpoint: Checkpoint, *, incarnation: Incarnation | None = None
    ) -> Checkpoint:
        """Store a checkpoint of an existing conversation. Raises `ConversationNotFound`
        if it is not stored or, with `incarnation`, if the id names another incarnation;
        `Conflict` if the checkpoint id is taken; nothing stored then. The check and the
        insert are one atomic step (review R-A2)."""

    @abstractmethod
    async def list_checkpoints(
        self, conversation_id: str, *, kind: str | None = None
    ) -> list[Checkpoint]:
        """Checkpoints of a conversation, oldest first, optionally of one kind."""

    @abstractmethod
    async def get_checkpoint(self, conversation_id: str, checkpoint_id: str) -> Checkpoint | None:
        """One checkpoint, or None."""

    @abstractmethod
    async def delete_checkpoint(self, conversation_id: str, checkpoint_id: str) -> bool:
        """True if it existed."""

    # --- summaries ----------------------------------------------------------------------

    @abstractmethod
    async def save_summary(self, summary: Summary) -> Summary:
        """Store a new summary of `summary.lineage_id`. Raises `MessageNotFound` if its
        `covers_message_id` is not a stored message of that lineage, `Conflict` if the
        id is taken."""

    @abstractmethod
    async def list_summaries(self, lineage_id: str) -> list[Summary]:
        """Every summary of the lineage, oldest (`created_at`, then id) first."""

    @abstractmethod
    async def delete_summary(self, lineage_id: str, summary_id: str) -> bool:
        """True if it existed."""

    # --- context items ------------------------------------------------------------------

    @abstractmethod
    async def save_context_item(
        self,
        item: ContextItem,
        *,
        max_items: int | None = None,
        incarnation: Incarnation | None = None,
    ) -> ContextItem:
        """Store a new item of `item.conversation_id`. Raises `ConversationNotFound` if the
        conversation is not stored or, with `incarnation`, if the id names another
        incarnation (review R-A2), `Conflict` if the id is taken, `ContextItemsFull` if
        `max_items` is given and the conversation already holds that many; nothing stored
        then. The count and the insert are one atomic step: concurrent saves to one
        conversation never take it past `max_items`."""

    @abstractmethod
    async def list_context_items(self, conversation_id: str) -> list[ContextItem]:
        """Every item of the conversation, oldest (`created_at`, then id) first."""

    @abstractmethod
    async def delete_context_item(self, conversation_id: str, item_id: str) -> bool:
        """True if the item existed."""

    @abstractmethod
    async def delete_context_items(self, conversation_id: str) -> int:
        """Delete every item of the conversation (none of another conversation of its
        lineage) in one atomic step; how many there were."""

    # --- uploaded packs ----------------------------------------------------------------

    @abstractmethod
    async def save_pack(
        self, pack_id: str, version: str, document: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Store a PromptPack document uploaded through the API, unless (pack_id, version)
        is already stored. Returns (the stored document, whether this call stored it):
        the first writer wins, so callers compare to detect a conflicting upload."""

    @abstractmethod
    async def list_packs(self) -> list[dict[str, Any]]:
        """Every stored pack document, in upload order."""

    @abstractmethod
    async def pack_count(self) -> int:
        """How many pack documents are stored: one cheap read (no document), which only
        grows (a stored pack is never replaced or deleted), so a change means an upload."""

    # --- expiry ------------------------------------------------------------------------

    @abstractmethod
    async def purge_expired(self, *, now: datetime) -> int:
        """Reclaim conversations expired at `now` as `delete_conversation` would; return
        how many. Backends with `capabilities.native_ttl` return 0."""
