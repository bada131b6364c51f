"""ETAs that learn (issue 13): each stage's recent durations per model, device, size class, node type and stage, and
each job's photo size (pixels) from its header at admission.

Like 0002 and 0003, this revision looks before it changes, so it works on a database made by `create_all` at any
version.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = sa.inspect(op.get_bind())
    if "pixels" not in {column["name"] for column in schema.get_columns("jobs")}:
        op.add_column("jobs", sa.Column("pixels", sa.BigInteger(), nullable=True))
    if not schema.has_table("stage_durations"):
        op.create_table(
            "stage_durations",
            sa.Column("model", sa.String(length=512), nullable=False),
            sa.Column("device", sa.String(length=32), nullable=False),
            sa.Column("bucket", sa.Integer(), nullable=False),
            sa.Column("step", sa.String(length=32), nullable=False),
            sa.Column("stage", sa.String(length=40), nullable=False),
            sa.Column("recent", sa.Text(), nullable=False),
            sa.Column("seconds", sa.Float(), nullable=False),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("model", "device", "bucket", "step", "stage"),
        )


def downgrade() -> None:
    op.drop_table("stage_durations")
    with op.batch_alter_table("jobs") as table:  # SQLite rebuilds the table to drop a column
        table.drop_column("pixels")
