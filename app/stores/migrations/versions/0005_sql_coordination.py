"""SQL coordination: idempotency records, run records, run events and instance heartbeats.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Used by `app.coordination.sql_idempotency` and `app.coordination.sql_runs` when the SQL
store's database also coordinates the instances (no Redis): idempotency keys and run
records survive a restart, and instances sharing PostgreSQL see each other's runs and
events (`LISTEN/NOTIFY` wakes the followers).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(200)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("ref", ID, nullable=False),
        sa.Column("extra", JSON, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])
    op.create_index("ix_idempotency_keys_ref", "idempotency_keys", ["ref"])
    op.create_table(
        "coordination_instances",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "run_records",
        sa.Column("run_id", ID, primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("terminal", sa.Boolean, nullable=False),
        sa.Column("record", JSON, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("events_expire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_run_records_expires_at", "run_records", ["expires_at"])
    op.create_index("ix_run_records_events_expire_at", "run_records", ["events_expire_at"])
    op.create_index("ix_run_records_live", "run_records", ["terminal", "owner"])
    op.create_table(
        "run_events",
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


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_table("run_records")
    op.drop_table("coordination_instances")
    op.drop_table("idempotency_keys")
