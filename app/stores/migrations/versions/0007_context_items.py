"""Context items (reference documents and notes of a conversation).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

`context_items`: one row per item, keyed (conversation_id, id), cascading with the
conversation.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDERED_ID = sa.String(200).with_variant(postgresql.VARCHAR(200, collation="C"), "postgresql")
ID = sa.String(200)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "context_items",
        sa.Column("conversation_id", ORDERED_ID, primary_key=True),
        sa.Column("id", ID, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            ondelete="CASCADE",
            name="fk_context_items_conversation",
        ),
    )
    op.create_index(
        "ix_context_items_conversation_created", "context_items", ["conversation_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("context_items")
