"""Jobs may count against a share beside their owner's (the client address of anonymous sessions: docs/jobs.md,
"Fairness"); the share is kept with the job and indexed for the admission count.

Like 0002, this revision looks before it changes, so it works on a database made by `create_all` at any version.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = sa.inspect(op.get_bind())
    if "share" not in {column["name"] for column in schema.get_columns("jobs")}:
        op.add_column("jobs", sa.Column("share", sa.String(160), nullable=True))
    if "ix_jobs_share" not in {index["name"] for index in schema.get_indexes("jobs")}:
        op.create_index("ix_jobs_share", "jobs", ["share"])


def downgrade() -> None:
    op.drop_index("ix_jobs_share", table_name="jobs")
    with op.batch_alter_table("jobs") as table:  # SQLite rebuilds the table to drop a column
        table.drop_column("share")
