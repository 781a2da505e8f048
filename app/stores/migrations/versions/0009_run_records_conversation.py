"""Run records name their conversation (the index erasure reads).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

`run_records.conversation_id` (indexed): deleting a conversation or erasing a user also
erases its runs' records and events, which hold message text
(`app.coordination.sql_runs.SqlRunLog.erase`). Existing rows get it from their record's
JSON; a row written before this revision by a process still running the old code has
NULL, and expires with its retention as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("run_records") as batch:
        batch.add_column(sa.Column("conversation_id", sa.String(200), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE run_records SET conversation_id = record -> 'run' ->> 'conversation_id'")
    else:
        op.execute(
            "UPDATE run_records SET conversation_id = json_extract(record, '$.run.conversation_id')"
        )
    op.create_index("ix_run_records_conversation", "run_records", ["conversation_id"])


def downgrade() -> None:
    op.drop_index("ix_run_records_conversation", "run_records")
    with op.batch_alter_table("run_records") as batch:
        batch.drop_column("conversation_id")
