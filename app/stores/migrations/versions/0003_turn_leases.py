"""Turn leases: per-conversation turn locks shared through the database.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Used by `app.coordination.sql_locks.SqlLeaseLocks` when instances share PostgreSQL (or a
SQLite file) without Redis. One row per locked conversation; a row whose `expires_at` has
passed is free and is taken over in place by the next acquirer.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(200)


def upgrade() -> None:
    op.create_table(
        "turn_leases",
        sa.Column("conversation_id", ID, primary_key=True),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("turn_leases")
