"""Turn leases keep an acquisition counter (stamps of SQL lease locks).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

`turn_leases.seq`: bumped by every acquisition, kept by releases (which now free the row
in place instead of deleting it), so that `app.coordination.sql_locks` can prove nobody
held a conversation's lock between two moments (`app.coordination.lease_locks`, *stamps*).
Existing rows start at 0; a row taken over without a release skips a number.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("turn_leases") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("turn_leases") as batch:
        batch.drop_column("seq")
