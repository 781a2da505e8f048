"""Media records and message references to them (DESIGN §13).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

`media`: one row per user and sha256 (a user's handle on stored bytes). `media_refs`: one
row per message part referencing a record; it cascades with its message, and its foreign
key to `media` keeps a referenced record from being deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(200)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", ID, primary_key=True),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("attached", sa.Boolean, nullable=False),
        sa.Column("retain", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.UniqueConstraint("user_id", "sha256", name="uq_media_user_sha256"),
    )
    op.create_index("ix_media_sha256", "media", ["sha256"])
    op.create_index("ix_media_collectable", "media", ["attached", "retain"])
    op.create_table(
        "media_refs",
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
    )
    op.create_index("ix_media_refs_media", "media_refs", ["media_id"])


def downgrade() -> None:
    op.drop_table("media_refs")
    op.drop_table("media")
