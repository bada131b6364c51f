"""Telemetry (issue 13): each ended job's run summed up (its stage times, peak memory and speeds), for
`GET /api/jobs/{id}`; the same summary rides on its final event.

Like 0002-0004, this revision looks before it changes, so it works on a database made by `create_all` at any version.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = sa.inspect(op.get_bind())
    if "metrics" not in {column["name"] for column in schema.get_columns("jobs")}:
        op.add_column("jobs", sa.Column("metrics", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as table:  # SQLite rebuilds the table to drop a column
        table.drop_column("metrics")
