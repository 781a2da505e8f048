"""Initial schema: conversations, messages, checkpoints.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: later changes go in new revisions. `tests/unit/stores/test_sql_schema.py` checks
that `app.stores.sql_tables` matches what the revisions build.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDERED_ID = sa.String(200).with_variant(postgresql.VARCHAR(200, collation="C"), "postgresql")
ID = sa.String(200)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "conversations",
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
        _ts("created_at"),
        _ts("updated_at"),
        _ts("expires_at", nullable=True),
        sa.Column("meta", JSON, nullable=False),
        sa.Column("data", JSON, nullable=False),
    )
    op.create_index(
        "ix_conversations_user_updated",
        "conversations",
        [
            sa.column("user_id"),
            sa.column("updated_at").desc(),
            sa.column("id").desc(),
        ],
    )
    op.create_index("ix_conversations_lineage", "conversations", ["lineage_id"])
    op.create_index("ix_conversations_expires", "conversations", ["expires_at"])
    op.create_index("ix_conversations_updated", "conversations", ["updated_at", "id"])

    op.create_table(
        "messages",
        sa.Column("lineage_id", ID, primary_key=True),
        sa.Column("id", ID, primary_key=True),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("depth", sa.Integer, nullable=False),
        _ts("created_at"),
        sa.Column("data", JSON, nullable=False),
    )
    op.create_index("ix_messages_lineage_parent", "messages", ["lineage_id", "parent_id"])
    op.create_index("ix_messages_conversation", "messages", ["conversation_id"])

    op.create_table(
        "checkpoints",
        sa.Column(
            "conversation_id",
            ORDERED_ID,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("id", ID, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message_id", ID, nullable=True),
        _ts("created_at"),
        sa.Column("data", JSON, nullable=False),
    )
    op.create_index(
        "ix_checkpoints_conversation_created", "checkpoints", ["conversation_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("messages")
    op.drop_table("conversations")
