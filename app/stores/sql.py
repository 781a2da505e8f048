"""`sqlite+aiosqlite://` and `postgresql+asyncpg://`: the SQL `StateStore`.

One code path for both databases (SQLAlchemy Core, async; the turn's statements on the
driver). This module holds conversations and messages; `SqlStore` inherits the engine and
connections from `sql_connections.SqlConnections` and the records attached to
conversations (checkpoints, summaries, context items, packs, media) from
`sql_records.SqlRecords`. The pieces that make it correct under concurrency:

* `append_messages` is a single conditional UPDATE (compare-and-set on the head, counters
  incremented in SQL) followed by one bulk INSERT, atomically (one transaction on SQLite,
  one statement on PostgreSQL: `sql_hot_append`). On PostgreSQL the UPDATE's row lock
  serializes concurrent appends and the loser re-evaluates the WHERE clause against the
  winner's head, so it updates nothing and gets `HeadConflict`.
* Writes on SQLite are serialized in-process by an asyncio.Lock and across processes by
  `BEGIN IMMEDIATE` plus a busy timeout (see `sql_engine`), so they never fail with
  "database is locked" under load.
* On PostgreSQL, deletions and creations take their lineage's advisory lock exclusively,
  head moves and checkpoints take it shared, so a message cannot become reachable (fork,
  checkpoint, branch selection) while its lineage is being reclaimed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import Conversation, ConversationStatus, Message, Page, Usage, utcnow
from app.domain.incarnation import Incarnation
from app.errors import (
    ConversationExists,
    ConversationNotFound,
    HeadConflict,
    MediaNotFound,
    VersionConflict,
)
from app.stores import sql_media, sql_messages
from app.stores._common import (
    Unreadable,
    decode_listed,
    listing_cursor_at,
    parse_listing_cursor,
)
from app.stores.base import (
    ConversationFilter,
    DeletedConversation,
    StoreCapabilities,
    media_references,
)
from app.stores.sql_driver import driver_of, sqlite_errors, sqlite_in_thread
from app.stores.sql_hot_append import (
    postgres_alive,
    postgres_append,
    postgres_append_on,
    sqlite_append,
    sqlite_append_or_alive,
)
from app.stores.sql_queries import (
    append_params,
    footprint_statements,
    incarnation,
    listing_statement,
    live,
)
from app.stores.sql_reclaim import reclaim_conversation
from app.stores.sql_records import SqlRecords
from app.stores.sql_tables import (
    conversation_from_row,
    conversation_row,
    conversations,
)

_conv = conversations


class SqlStore(SqlRecords):
    capabilities = StoreCapabilities(native_ttl=False, shared=True, sql_coordination=True)

    # --- conversations -----------------------------------------------------------------

    async def create_conversation(self, conversation: Conversation) -> Conversation:
        cid = conversation.id
        now = utcnow()
        exists = ConversationExists(f"Conversation {cid!r} already exists.")
        async with self._write() as conn:
            old = (
                await conn.execute(
                    sa.select(_conv.c.lineage_id, _conv.c.expires_at).where(_conv.c.id == cid)
                )
            ).first()
            if old is not None and (old.expires_at is None or old.expires_at > now):
                raise exists
            lineages = {conversation.lineage_id} | ({old.lineage_id} if old else set())
            await self._lock_lineages(conn, lineages)
            # Under the lock, reclaim the old one only if it is still there and expired.
            if old is not None and not await reclaim_conversation(
                conn, cid, old.lineage_id, expired_at=now
            ):
                still = await conn.scalar(sa.select(_conv.c.id).where(_conv.c.id == cid))
                if still is not None:  # touched or recreated meanwhile
                    raise exists
            try:
                await conn.execute(sa.insert(_conv).values(conversation_row(conversation)))
            except sa_exc.IntegrityError as exc:
                raise exists from exc
        return conversation.model_copy(deep=True)

    async def get_conversation(self, conversation_id: str, *, now: datetime) -> Conversation | None:
        """On the driver (`sql_hot`): the one read every turn makes."""
        if self._conversation_read is None:
            raise RuntimeError("SqlStore.open() has not been called")
        async with self._read_driver() as driver:
            return await self._conversation_read(driver, conversation_id, now)

    async def update_conversation(
        self, conversation: Conversation, *, expected_version: int
    ) -> Conversation:
        cid = conversation.id
        values = conversation_row(conversation)
        values.pop("id")
        values["version"] = expected_version + 1
        async with self._write() as conn:
            await self._lock_lineages(conn, [conversation.lineage_id], shared=True)
            row = (
                await conn.execute(
                    sa.update(_conv)
                    .where(incarnation(conversation), _conv.c.version == expected_version)
                    .values(values)
                    .returning(*_conv.c)
                )
            ).first()
            if row is None:
                stored = await conn.scalar(
                    sa.select(_conv.c.version).where(incarnation(conversation))
                )
                if stored is None:
                    raise ConversationNotFound(f"Conversation {cid!r} not found.")
                raise VersionConflict(
                    f"Conversation {cid!r} is at version {stored}, not {expected_version}."
                )
        return conversation_from_row(row._mapping)

    async def touch_conversation(self, conversation_id: str, expires_at: datetime) -> None:
        async with self._write() as conn:
            await conn.execute(
                sa.update(_conv).where(_conv.c.id == conversation_id).values(expires_at=expires_at)
            )

    async def delete_conversation(
        self,
        conversation_id: str,
        *,
        incarnation: Incarnation | None = None,
        expected_version: int | None = None,
    ) -> bool:
        async with self._write() as conn:
            gone = await self._delete(
                conn,
                conversation_id,
                expired_at=None,
                incarnation=incarnation,
                expected_version=expected_version,
            )
            return gone is not None

    async def footprint(self, lineage_id: str, conversation_ids: Sequence[str]) -> dict[str, int]:
        async with self._read() as conn:
            return {
                name: int(await conn.scalar(stmt) or 0)
                for name, stmt in footprint_statements(lineage_id, conversation_ids).items()
            }

    async def delete_user_conversations(self, user_id: str) -> list[DeletedConversation]:
        async with self._read() as conn:
            ids = (
                await conn.execute(
                    sa.select(_conv.c.id).where(_conv.c.user_id == user_id).order_by(_conv.c.id)
                )
            ).scalars()
            candidates = list(ids)
        deleted = []
        for cid in candidates:
            async with self._write() as conn:
                gone = await self._delete(conn, cid, expired_at=None)
                if gone is not None:
                    deleted.append(gone)
        return deleted

    async def _delete(
        self,
        conn: AsyncConnection,
        conversation_id: str,
        *,
        expired_at: datetime | None,
        incarnation: Incarnation | None = None,
        expected_version: int | None = None,
    ) -> DeletedConversation | None:
        """The deleted conversation (None: nothing deleted). With `incarnation` its row is
        not read first: `reclaim_conversation` finds it under the lineage's lock or not."""
        if incarnation is None:
            row = (
                await conn.execute(
                    sa.select(_conv.c.lineage_id, _conv.c.created_at).where(
                        _conv.c.id == conversation_id
                    )
                )
            ).first()
            if row is None:
                return None
            lineage_id, created_at = str(row.lineage_id), row.created_at
        else:
            lineage_id, created_at = incarnation
        await self._lock_lineages(conn, [lineage_id])
        reclaimed = await reclaim_conversation(
            conn,
            conversation_id,
            lineage_id,
            expired_at=expired_at,
            created_at=None if incarnation is None else created_at,
            expected_version=expected_version,
        )
        if not reclaimed:
            return None
        return DeletedConversation(conversation_id, lineage_id, created_at)

    async def list_conversations(
        self,
        flt: ConversationFilter,
        *,
        now: datetime,
        limit: int,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        after = parse_listing_cursor(cursor) if cursor is not None else None
        stmt = listing_statement(
            flt, now=now, limit=limit + 1, after=after, jsonb=self._traits.jsonb
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        found: list[Conversation] = []
        for row in rows[:limit]:
            conv = decode_listed(row.id, partial(conversation_from_row, row._mapping))
            if not isinstance(conv, Unreadable):
                found.append(conv)
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = listing_cursor_at(last.updated_at, last.id) if last is not None else None
        return Page(data=found, next_cursor=next_cursor)

    # --- messages ----------------------------------------------------------------------

    async def append_messages(
        self,
        conversation: Conversation,
        messages_: Sequence[Message],
        *,
        usage: Usage,
        cost_usd: float,
        now: datetime,
        status: ConversationStatus | None = None,
    ) -> Conversation:
        if not messages_:
            raise ValueError("append_messages needs at least one message")
        cid = conversation.id
        params = append_params(
            conversation, messages_[-1], usage=usage, cost_usd=cost_usd, now=now, status=status
        )
        refs = media_references(messages_)
        stored: dict[str, Any] | None
        if self._traits.single_writer and not refs:  # SQLite: BEGIN IMMEDIATE .. COMMIT
            async with self._sqlite_write() as writer:  # one hand-off (`sql_hot_append`)
                stored, alive = await writer.transaction(
                    partial(sqlite_append_or_alive, params, messages_)
                )
        elif not refs:  # PostgreSQL without media: one statement, in autocommit
            async with self._postgres_one() as driver:
                stored = await postgres_append_on(driver, params, messages_)
                alive = stored is not None or await postgres_alive(driver, params)
        else:  # media references: checked, the append, the references, one transaction
            async with self._write() as conn:
                await self._check_media(conn, refs)
                if self._traits.single_writer:  # in SQLAlchemy's transaction, begun
                    with sqlite_errors():
                        stored = await sqlite_in_thread(
                            await driver_of(conn),
                            partial(sqlite_append, params=params, messages=messages_),
                        )
                else:
                    stored = await postgres_append(conn, params, messages_, in_transaction=True)
                if stored is None:
                    alive = (
                        await conn.scalar(
                            sa.select(_conv.c.id).where(incarnation(conversation), live(now))
                        )
                        is not None
                    )
                else:
                    try:
                        await sql_media.insert_refs(conn, stored["lineage_id"], refs)
                    except sa_exc.IntegrityError as exc:  # deleted since the check
                        raise MediaNotFound("Media referenced by the message was deleted.") from exc
        if stored is None:  # nothing was written
            if not alive:
                raise ConversationNotFound(f"Conversation {cid!r} not found.")
            raise HeadConflict(f"Conversation {cid!r} head moved.")
        return conversation_from_row(stored)

    async def _check_media(self, conn: AsyncConnection, refs: list[tuple[str, str]]) -> None:
        """Before the append: the media its messages reference exist (its SELECT opens
        the transaction on PostgreSQL's driver, see `postgres_append`)."""
        wanted = sorted({media_id for _, media_id in refs})
        missing = sorted(set(wanted) - await sql_media.existing_ids(conn, wanted))
        if missing:
            raise MediaNotFound(f"Media {missing[0]!r} not found.")

    async def get_messages(self, lineage_id: str, message_ids: Sequence[str]) -> list[Message]:
        async with self._read() as conn:
            return await sql_messages.by_ids(conn, lineage_id, message_ids)

    async def get_path(self, lineage_id: str, message_id: str, *, limit: int) -> list[Message]:
        """On the driver (`sql_hot_path`): the read of a window the cache does not hold."""
        if limit < 1:
            return []
        if self._path_read is None:
            raise RuntimeError("SqlStore.open() has not been called")
        async with self._read_driver() as driver:  # one statement: no transaction around it
            return await self._path_read(driver, lineage_id, message_id, limit)

    async def ancestor_id(self, lineage_id: str, message_id: str, *, steps: int) -> str | None:
        if steps < 0:
            return None
        async with self._read_one() as conn:
            return await sql_messages.ancestor(conn, lineage_id, message_id, steps)

    async def list_children(self, lineage_id: str, parent_id: str | None) -> list[Message]:
        async with self._read_one() as conn:
            return await sql_messages.children(conn, lineage_id, parent_id)

    async def children_of(
        self, lineage_id: str, parent_ids: Sequence[str]
    ) -> dict[str, list[Message]]:
        """One query per 500 parents (the base class asks once per parent)."""
        async with self._read() as conn:
            return await sql_messages.children_of(conn, lineage_id, parent_ids)

    # --- expiry ------------------------------------------------------------------------

    async def purge_expired(self, *, now: datetime) -> int:
        async with self._read() as conn:
            expired = list(
                (
                    await conn.execute(sa.select(_conv.c.id).where(_conv.c.expires_at <= now))
                ).scalars()
            )
        purged = 0
        for cid in expired:
            async with self._write() as conn:
                purged += await self._delete(conn, cid, expired_at=now) is not None
        return purged
