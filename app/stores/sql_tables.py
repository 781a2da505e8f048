"""Table definitions of the SQL backend and the row <-> model mapping.

Alembic revisions are written by hand and frozen; `tests/unit/stores/test_sql_schema.py`
compares these tables with the migrated schema so the two cannot drift apart.

Layout (DESIGN §3/§4):

* `conversations`: the fields that change on their own (head, counters, usage totals,
  status, timestamps, metadata) are real columns, so `append_messages` is one conditional
  `UPDATE ... SET version = version + 1, input_tokens = input_tokens + :n ...` and never a
  read-modify-write of a JSON blob; the rest of the model (pack, prompt, variables, system
  prompt, context policy, fork origin) lives in `data`, which only full replacements write.
* `messages`: immutable; the whole `Message` in `data`, plus the columns the tree walks and
  the deletion rule need. The key is (lineage_id, id): a message is addressed within its
  lineage, so ids of another lineage are never visible and never collide.
* `checkpoints`: a pointer to a message, keyed (conversation_id, id), cascading with the
  conversation.
* `media` / `media_refs`: media records and the message references to them (DESIGN §13).
* `summaries`: context summaries (`Summary`), keyed (lineage_id, id), cascading with the
  message they cover (so with the lineage too).
* `context_items`: a conversation's context items (`ContextItem`), keyed
  (conversation_id, id), cascading with the conversation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from app.domain import Conversation, ConversationUsage, Message


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect.

    PostgreSQL stores `timestamptz`. SQLite has no datetime type: values are stored as naive
    UTC text in SQLAlchemy's fixed-width format, so text order is time order and the
    comparisons of expiry and keyset pagination stay correct. Naive input is taken as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Conversation ids are ordered (listing ties, prefix ranges): compare them byte-wise on
# PostgreSQL too, whatever the database's default collation, as SQLite and Python do.
ORDERED_ID = sa.String(200).with_variant(postgresql.VARCHAR(200, collation="C"), "postgresql")
ID = sa.String(200)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData()

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", ORDERED_ID, primary_key=True),
    sa.Column("lineage_id", ID, nullable=False),
    sa.Column("user_id", ID, nullable=False),
    sa.Column("pack_id", ID, nullable=False),
    sa.Column("head_message_id", ID, nullable=True),
    sa.Column("message_count", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("total_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("ttl_seconds", sa.Integer, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("meta", JSON, nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Index("ix_conversations_lineage", "lineage_id"),
    sa.Index("ix_conversations_expires", "expires_at"),
    sa.Index("ix_conversations_updated", "updated_at", "id"),
)

# A user's listing: `WHERE user_id = ? ORDER BY updated_at DESC, id DESC LIMIT n`.
sa.Index(
    "ix_conversations_user_updated",
    conversations.c.user_id,
    conversations.c.updated_at.desc(),
    conversations.c.id.desc(),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("lineage_id", ID, primary_key=True),
    sa.Column("id", ID, primary_key=True),
    sa.Column("parent_id", ID, nullable=True),
    sa.Column("conversation_id", ID, nullable=False),
    sa.Column("depth", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Index("ix_messages_lineage_parent", "lineage_id", "parent_id"),
    sa.Index("ix_messages_conversation", "conversation_id"),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column(
        "conversation_id",
        ORDERED_ID,
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("id", ID, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("message_id", ID, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Index("ix_checkpoints_conversation_created", "conversation_id", "created_at"),
)

# PromptPacks uploaded through the API (packs from PACKS_DIR are read from disk instead).
packs = sa.Table(
    "packs",
    metadata,
    sa.Column("pack_id", ID, primary_key=True),
    sa.Column("version", sa.String(200), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("document", JSON, nullable=False),
)

# Turn locks of instances sharing the database without Redis (`app.coordination.sql_locks`):
# one row per locked conversation; an expired (or released) row is free and is taken over
# in place; `seq` counts its acquisitions (migration 0008).
turn_leases = sa.Table(
    "turn_leases",
    metadata,
    sa.Column("conversation_id", ID, primary_key=True),
    sa.Column("run_id", ID, nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
)

# Idempotency records of the SQL coordinator (`app.coordination.sql_idempotency`): one row
# per (scope, key); an expired row is free and is taken over in place.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("ref", ID, nullable=False),
    sa.Column("extra", JSON, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Index("ix_idempotency_keys_expires_at", "expires_at"),
    sa.Index("ix_idempotency_keys_ref", "ref"),
)

# Heartbeats of the instances executing runs (`app.coordination.sql_runs`): a run whose
# owner's row expired belongs to a dead instance.
coordination_instances = sa.Table(
    "coordination_instances",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

# Run records (`RunRecord` in `record`) and their event logs (`app.coordination.sql_runs`).
# Events with seq < first_seq were dropped (trimmed or past retention).
run_records = sa.Table(
    "run_records",
    metadata,
    sa.Column("run_id", ID, primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("terminal", sa.Boolean, nullable=False),
    sa.Column("record", JSON, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("events_expire_at", UTCDateTime, nullable=True),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("conversation_id", ID, nullable=True),  # (migration 0009; NULL before it)
    sa.Index("ix_run_records_expires_at", "expires_at"),
    sa.Index("ix_run_records_events_expire_at", "events_expire_at"),
    sa.Index("ix_run_records_live", "terminal", "owner"),
    sa.Index("ix_run_records_conversation", "conversation_id"),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column(
        "run_id",
        ID,
        sa.ForeignKey("run_records.run_id", ondelete="CASCADE", name="fk_run_events_run"),
        primary_key=True,
    ),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("data", JSON, nullable=False),
)

# Media records (`MediaRecord`): a user's handle on bytes in the media store, at most one
# per (user, sha256). `data` holds the model without the flag columns.
media = sa.Table(
    "media",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("attached", sa.Boolean, nullable=False),
    sa.Column("retain", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.UniqueConstraint("user_id", "sha256", name="uq_media_user_sha256"),
    sa.Index("ix_media_sha256", "sha256"),
    sa.Index("ix_media_collectable", "attached", "retain"),
)

# One row per (message, media) reference. It goes with its message (cascade), and a
# referenced media row cannot be deleted (the foreign key), so no message ever points at
# a missing record, whatever runs concurrently.
media_refs = sa.Table(
    "media_refs",
    metadata,
    sa.Column("lineage_id", ID, primary_key=True),
    sa.Column("message_id", ID, primary_key=True),
    sa.Column(
        "media_id",
        ID,
        sa.ForeignKey("media.id", name="fk_media_refs_media"),
        primary_key=True,
    ),
    sa.ForeignKeyConstraint(
        ["lineage_id", "message_id"],
        ["messages.lineage_id", "messages.id"],
        ondelete="CASCADE",
        name="fk_media_refs_message",
    ),
    sa.Index("ix_media_refs_media", "media_id"),
)

summaries = sa.Table(
    "summaries",
    metadata,
    sa.Column("lineage_id", ID, primary_key=True),
    sa.Column("id", ID, primary_key=True),
    sa.Column("covers_message_id", ID, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.ForeignKeyConstraint(
        ["lineage_id", "covers_message_id"],
        ["messages.lineage_id", "messages.id"],
        ondelete="CASCADE",
        name="fk_summaries_message",
    ),
    sa.Index("ix_summaries_lineage_created", "lineage_id", "created_at"),
    sa.Index("ix_summaries_message", "lineage_id", "covers_message_id"),
)

context_items = sa.Table(
    "context_items",
    metadata,
    sa.Column("conversation_id", ORDERED_ID, primary_key=True),
    sa.Column("id", ID, primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.ForeignKeyConstraint(
        ["conversation_id"],
        ["conversations.id"],
        ondelete="CASCADE",
        name="fk_context_items_conversation",
    ),
    sa.Index("ix_context_items_conversation_created", "conversation_id", "created_at"),
)

# Conversation fields held in columns; everything else goes to `data`.
_CONVERSATION_COLUMNS = frozenset(
    {
        "id",
        "lineage_id",
        "user_id",
        "pack_id",
        "head_message_id",
        "message_count",
        "version",
        "status",
        "usage",
        "ttl_seconds",
        "created_at",
        "updated_at",
        "expires_at",
        "metadata",
    }
)


def conversation_row(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id,
        "lineage_id": c.lineage_id,
        "user_id": c.user_id,
        "pack_id": c.pack_id,
        "head_message_id": c.head_message_id,
        "message_count": c.message_count,
        "version": c.version,
        "status": c.status.value,
        "input_tokens": c.usage.input_tokens,
        "output_tokens": c.usage.output_tokens,
        "total_tokens": c.usage.total_tokens,
        "cost_usd": c.usage.cost_usd,
        "ttl_seconds": c.ttl_seconds,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "expires_at": c.expires_at,
        "meta": c.model_dump(mode="json", include={"metadata"})["metadata"],
        "data": c.model_dump(mode="json", exclude=set(_CONVERSATION_COLUMNS)),
    }


def conversation_from_row(row: Mapping[Any, Any]) -> Conversation:
    usage = ConversationUsage(
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        total_tokens=row["total_tokens"],
        cost_usd=row["cost_usd"],
    )
    return Conversation.model_validate(
        {
            **row["data"],
            "id": row["id"],
            "lineage_id": row["lineage_id"],
            "user_id": row["user_id"],
            "pack_id": row["pack_id"],
            "head_message_id": row["head_message_id"],
            "message_count": row["message_count"],
            "version": row["version"],
            "status": row["status"],
            "usage": usage,
            "ttl_seconds": row["ttl_seconds"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "expires_at": row["expires_at"],
            "metadata": row["meta"],
        }
    )


def json_text(column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """A JSON column read as its text, undecoded: a message read through it is parsed and
    validated in one step by pydantic (`message_from_json`), ~2x cheaper per row than
    `json.loads` followed by validation of the dict (the reads of a cold context window
    parse one row per message). A cast in SQL, not only a Python type: asyncpg decodes
    JSONB itself with the codecs SQLAlchemy installs (on SQLite the cast is a no-op)."""
    return sa.cast(column, sa.Text)


def message_from_json(text: str) -> Message:
    return Message.model_validate_json(text)
