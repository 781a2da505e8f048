"""`sqlite+aiosqlite://` and `postgresql+asyncpg://`: the SQL `StateStore`.

One code path for both databases (SQLAlchemy Core, async). The pieces that make it correct
under concurrency:

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

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain import Checkpoint, Conversation, ConversationStatus, Message, Page, Usage, utcnow
from app.domain.context_item import ContextItem
from app.domain.media import MediaRecord
from app.domain.summary import Summary
from app.errors import (
    Conflict,
    ConversationExists,
    ConversationNotFound,
    HeadConflict,
    MediaNotFound,
    StoreUnavailable,
    VersionConflict,
)
from app.stores import (
    sql_checkpoints,
    sql_context_items,
    sql_media,
    sql_messages,
    sql_packs,
    sql_summaries,
)
from app.stores._common import (
    Unreadable,
    decode_listed,
    listing_cursor_at,
    parse_listing_cursor,
)
from app.stores.base import (
    ConversationFilter,
    StateStore,
    StoreCapabilities,
    media_references,
)
from app.stores.sql_engine import (
    IDLE_PING_S,
    PG_LOCK_NAMESPACE,
    WRITE_OPTION,
    DialectTraits,
    create_engine,
    parse_url,
    single_statement_reads,
    sqlite_path,
    unavailable_on_connection_errors,
    upgrade_schema,
)
from app.stores.sql_hot import ConversationRead, conversation_read
from app.stores.sql_hot_append import postgres_append, sqlite_append
from app.stores.sql_queries import (
    append_params,
    footprint_statements,
    listing_statement,
    live,
)
from app.stores.sql_reclaim import reclaim_conversation
from app.stores.sql_tables import (
    conversation_from_row,
    conversation_row,
    conversations,
)

_conv = conversations

# SQLAlchemy closes an invalidated asyncpg connection "gracefully" for up to 2 s
# (`close(timeout=2)` in its asyncpg adapter) before terminating it.
GRACEFUL_CLOSE_S = 2.0


class SqlStore(StateStore):
    capabilities = StoreCapabilities(native_ttl=False, shared=True, sql_coordination=True)

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        idle_ping_s: float = IDLE_PING_S,
        pool_size: int = 10,
        max_overflow: int = 20,
    ) -> None:
        """`timeout_s` (`PARLEY_STORE_TIMEOUT_S`) bounds every call on PostgreSQL (pool
        wait, connect, statements: a black-holed server is a 503, not a hang). The call
        is cut `GRACEFUL_CLOSE_S` before 90 % of it, because SQLAlchemy then gives the
        abandoned connection that long to close; connecting alone gets half the cut.
        SQLite (a local file, where cancelling a write midway is worse than waiting)
        keeps its busy timeout. `idle_ping_s`: PostgreSQL connections idle longer than
        this are pinged before use (`app.stores.sql_engine._ping_idle_connections`).
        `pool_size`/`max_overflow` size PostgreSQL's connection pool."""
        self._url = parse_url(url)
        self._timeout_s = timeout_s
        self._idle_ping_s = idle_ping_s
        self._pool = {"pool_size": pool_size, "max_overflow": max_overflow}
        self._call_timeout_s: float | None = None  # set by open() on PostgreSQL
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._single_reader: AsyncEngine | None = None
        self._traits = DialectTraits(single_writer=False, advisory_locks=False, jsonb=False)
        self._write_lock: asyncio.Lock | None = None
        self._conversation_read: ConversationRead | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("SqlStore.open() has not been called")
        return self._engine

    def sql_engine(self) -> AsyncEngine:
        return self.engine

    def sql_write_lock(self) -> asyncio.Lock | None:
        return self._write_lock

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._engine is not None:
            return
        path = sqlite_path(self._url)
        if path is not None:
            with unavailable_on_connection_errors():  # OSError: the path is unusable
                await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        call_s = max(self._timeout_s * 0.9 - GRACEFUL_CLOSE_S, self._timeout_s * 0.45)
        engine = create_engine(
            self._url, connect_timeout_s=call_s / 2, idle_ping_s=self._idle_ping_s, **self._pool
        )
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._single_reader = single_statement_reads(engine)
        self._traits = DialectTraits.of(engine.dialect)
        self._conversation_read = conversation_read(engine.dialect)
        self._write_lock = asyncio.Lock() if self._traits.single_writer else None
        try:
            async with self._write() as conn:  # migrations may take long: not bounded
                await conn.run_sync(upgrade_schema)
            self._call_timeout_s = None if self._traits.single_writer else call_s
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        engine, self._engine, self._writer = self._engine, None, None
        self._single_reader = None
        if engine is not None:
            await engine.dispose()

    async def ping(self) -> None:
        if self._engine is None:
            raise StoreUnavailable("The state store is not open.")
        async with self._read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with unavailable_on_connection_errors():
            async with asyncio.timeout(self._call_timeout_s), self.engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def _read_one(self) -> AsyncIterator[AsyncConnection]:
        """For a read of exactly one statement (`single_statement_reads`)."""
        if self._single_reader is None:
            raise RuntimeError("SqlStore.open() has not been called")
        with unavailable_on_connection_errors():
            async with asyncio.timeout(self._call_timeout_s), self._single_reader.connect() as c:
                yield c

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self._writer is None:
            raise RuntimeError("SqlStore.open() has not been called")
        lock: AbstractAsyncContextManager[Any] = self._write_lock or nullcontext()
        with unavailable_on_connection_errors():
            async with asyncio.timeout(self._call_timeout_s), lock, self._writer.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _write_one(self) -> AsyncIterator[AsyncConnection]:
        """PostgreSQL, for a write of exactly one statement: autocommit (no BEGIN / COMMIT
        round trips; the statement is atomic on its own), bounded like every call."""
        if self._traits.single_writer:
            raise RuntimeError("SQLite writes take the write lock: use _write()")
        async with self._read_one() as conn:
            yield conn

    async def _lock_lineages(
        self, conn: AsyncConnection, lineage_ids: Iterable[str], *, shared: bool = False
    ) -> None:
        """PostgreSQL: transaction-scoped advisory locks, taken in a fixed order."""
        if not self._traits.advisory_locks:
            return
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        for lineage_id in sorted(set(lineage_ids)):
            await conn.execute(
                sa.text(f"SELECT {fn}(:ns, hashtext(:lineage))"),
                {"ns": PG_LOCK_NAMESPACE, "lineage": lineage_id},
            )

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
        async with self._read_one() as conn:
            return await self._conversation_read(conn, conversation_id, now)

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
                    .where(_conv.c.id == cid, _conv.c.version == expected_version)
                    .values(values)
                    .returning(*_conv.c)
                )
            ).first()
            if row is None:
                stored = await conn.scalar(sa.select(_conv.c.version).where(_conv.c.id == cid))
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

    async def delete_conversation(self, conversation_id: str) -> bool:
        async with self._write() as conn:
            return await self._delete(conn, conversation_id, expired_at=None)

    async def footprint(self, lineage_id: str, conversation_ids: Sequence[str]) -> dict[str, int]:
        async with self._read() as conn:
            return {
                name: int(await conn.scalar(stmt) or 0)
                for name, stmt in footprint_statements(lineage_id, conversation_ids).items()
            }

    async def delete_user_conversations(self, user_id: str) -> list[str]:
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
                if await self._delete(conn, cid, expired_at=None):
                    deleted.append(cid)
        return deleted

    async def _delete(
        self, conn: AsyncConnection, conversation_id: str, *, expired_at: datetime | None
    ) -> bool:
        lineage_id = await conn.scalar(
            sa.select(_conv.c.lineage_id).where(_conv.c.id == conversation_id)
        )
        if lineage_id is None:
            return False
        await self._lock_lineages(conn, [lineage_id])
        return await reclaim_conversation(conn, conversation_id, lineage_id, expired_at=expired_at)

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
        # on the driver (`sql_hot_append`); PostgreSQL without media: one statement, in
        # autocommit
        one_statement = not self._traits.single_writer and not refs
        async with self._write_one() if one_statement else self._write() as conn:
            if refs:
                await self._check_media(conn, refs)
            if self._traits.single_writer:
                stored = await sqlite_append(conn, params, messages_)
            else:
                stored = await postgres_append(
                    conn, params, messages_, in_transaction=not one_statement
                )
            if stored is None:
                alive = await conn.scalar(sa.select(_conv.c.id).where(_conv.c.id == cid, live(now)))
                if alive is None:
                    raise ConversationNotFound(f"Conversation {cid!r} not found.")
                raise HeadConflict(f"Conversation {cid!r} head moved.")
            if refs:
                try:
                    await sql_media.insert_refs(conn, stored["lineage_id"], refs)
                except sa_exc.IntegrityError as exc:  # deleted since the check
                    raise MediaNotFound("Media referenced by the message was deleted.") from exc
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
        if limit < 1:
            return []
        async with self._read() as conn:
            return await sql_messages.path(conn, lineage_id, message_id, limit)

    async def list_children(self, lineage_id: str, parent_id: str | None) -> list[Message]:
        async with self._read() as conn:
            return await sql_messages.children(conn, lineage_id, parent_id)

    async def children_of(
        self, lineage_id: str, parent_ids: Sequence[str]
    ) -> dict[str, list[Message]]:
        """One query per 500 parents (the base class asks once per parent)."""
        async with self._read() as conn:
            return await sql_messages.children_of(conn, lineage_id, parent_ids)

    # --- checkpoints -------------------------------------------------------------------

    async def create_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        cid = checkpoint.conversation_id
        owner = sa.select(_conv.c.lineage_id).where(_conv.c.id == cid)
        async with self._write() as conn:
            lineage_id = await conn.scalar(owner)
            if lineage_id is not None and self._traits.advisory_locks:
                # A checkpoint can keep messages alive: no reclaim of the lineage may run
                # between our check and our commit. Re-read under the lock.
                await self._lock_lineages(conn, [lineage_id], shared=True)
                lineage_id = await conn.scalar(owner)
            if lineage_id is None:
                raise ConversationNotFound(f"Conversation {cid!r} not found.")
            await sql_checkpoints.insert(conn, checkpoint)
        return checkpoint.model_copy(deep=True)

    async def list_checkpoints(
        self, conversation_id: str, *, kind: str | None = None
    ) -> list[Checkpoint]:
        async with self._read() as conn:
            return await sql_checkpoints.of_conversation(conn, conversation_id, kind)

    async def get_checkpoint(self, conversation_id: str, checkpoint_id: str) -> Checkpoint | None:
        async with self._read() as conn:
            return await sql_checkpoints.get(conn, conversation_id, checkpoint_id)

    async def delete_checkpoint(self, conversation_id: str, checkpoint_id: str) -> bool:
        async with self._write() as conn:
            return await sql_checkpoints.delete(conn, conversation_id, checkpoint_id)

    # --- summaries ----------------------------------------------------------------------

    async def save_summary(self, summary: Summary) -> Summary:
        async with self._write() as conn:
            # no reclaim of the lineage between the check of the covered message and commit
            await self._lock_lineages(conn, [summary.lineage_id], shared=True)
            await sql_summaries.insert(conn, summary)
        return summary.model_copy(deep=True)

    async def list_summaries(self, lineage_id: str) -> list[Summary]:
        async with self._read() as conn:
            return await sql_summaries.of_lineage(conn, lineage_id)

    async def delete_summary(self, lineage_id: str, summary_id: str) -> bool:
        async with self._write() as conn:
            return await sql_summaries.delete(conn, lineage_id, summary_id)

    # --- context items ------------------------------------------------------------------

    async def save_context_item(
        self, item: ContextItem, *, max_items: int | None = None
    ) -> ContextItem:
        async with self._write() as conn:
            await sql_context_items.insert(conn, item, max_items=max_items)
        return item.model_copy(deep=True)

    async def list_context_items(self, conversation_id: str) -> list[ContextItem]:
        async with self._read() as conn:
            return await sql_context_items.of_conversation(conn, conversation_id)

    async def delete_context_item(self, conversation_id: str, item_id: str) -> bool:
        async with self._write() as conn:
            return await sql_context_items.delete(conn, conversation_id, item_id)

    async def delete_context_items(self, conversation_id: str) -> int:
        async with self._write() as conn:
            return await sql_context_items.delete_all(conn, conversation_id)

    # --- uploaded packs ----------------------------------------------------------------

    async def save_pack(
        self, pack_id: str, version: str, document: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        async with self._write() as conn:
            if await sql_packs.insert_pack(conn, pack_id, version, document):
                return document, True
            stored = await sql_packs.stored_pack(conn, pack_id, version)
        assert stored is not None
        return stored, False

    async def list_packs(self) -> list[dict[str, Any]]:
        async with self._read() as conn:
            return await sql_packs.all_packs(conn)

    # --- media records and references ----------------------------------------------------

    async def save_media(self, record: MediaRecord) -> MediaRecord:
        async with self._write() as conn:
            existing = await sql_media.find_owned(conn, record.user_id, record.sha256)
            if existing is not None:
                return existing
            if await sql_media.insert(conn, record):
                return record.model_copy()
            existing = await sql_media.find_owned(conn, record.user_id, record.sha256)
        if existing is None:
            raise Conflict(f"Media {record.id!r} already exists.")
        return existing

    async def get_media(self, media_id: str) -> MediaRecord | None:
        async with self._read() as conn:
            return await sql_media.get(conn, media_id)

    async def mark_media_attached(self, media_ids: Sequence[str], *, retain: bool) -> None:
        if not media_ids:
            return
        async with self._write() as conn:
            await sql_media.mark_attached(conn, media_ids, retain)

    async def media_in_use(self, sha256: str) -> bool:
        async with self._read() as conn:
            return await sql_media.in_use(conn, sha256)

    async def lineage_media_ids(self, lineage_id: str) -> list[str]:
        async with self._read() as conn:
            return await sql_media.lineage_ids(conn, lineage_id)

    async def collect_media(
        self, media_ids: Sequence[str], *, force: bool = False
    ) -> list[MediaRecord]:
        deleted = []
        for media_id in dict.fromkeys(media_ids):
            async with self._write() as conn:
                found = await sql_media.delete_if_unreferenced(conn, media_id, force=force)
            if found is not None:
                deleted.append(found)
        return deleted

    async def user_media_ids(self, user_id: str) -> list[str]:
        async with self._read() as conn:
            return await sql_media.user_ids(conn, user_id)

    async def collectable_media_ids(self, *, limit: int) -> list[str]:
        async with self._read() as conn:
            return await sql_media.collectable_ids(conn, limit)

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
                purged += await self._delete(conn, cid, expired_at=now)
        return purged
