"""Context summaries (context strategy `summarize`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

`summaries`: one row per summary of a lineage, pointing at the last message it covers;
it cascades with that message, so deleting a history deletes its summaries.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(200)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "summaries",
        sa.Column("lineage_id", ID, primary_key=True),
        sa.Column("id", ID, primary_key=True),
        sa.Column("covers_message_id", ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["lineage_id", "covers_message_id"],
            ["messages.lineage_id", "messages.id"],
            ondelete="CASCADE",
            name="fk_summaries_message",
        ),
    )
    op.create_index("ix_summaries_lineage_created", "summaries", ["lineage_id", "created_at"])
    op.create_index("ix_summaries_message", "summaries", ["lineage_id", "covers_message_id"])


def downgrade() -> None:
    op.drop_table("summaries")
