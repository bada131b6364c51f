"""Queue places are live (docs/protocol.md): the last announced place is no longer kept; the shared queue's head
and its next number are found through indexes instead of a scan.

A database made by `create_all` is stamped at 0001 whatever models made it, so this revision looks before it
changes: it works on one made before it and on one made after.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = sa.inspect(op.get_bind())
    columns = {column["name"] for column in schema.get_columns("queue_entries")}
    if "position" in columns:
        with op.batch_alter_table("queue_entries") as table:  # SQLite rebuilds the table to drop a column
            table.drop_column("position")
    _index("queue_entries", "ix_queue_entries_ticket", "ticket", schema)
    _index("queue_lanes", "ix_queue_lanes_turn", "turn", schema)


def downgrade() -> None:
    op.drop_index("ix_queue_lanes_turn", table_name="queue_lanes")
    op.drop_index("ix_queue_entries_ticket", table_name="queue_entries")
    with op.batch_alter_table("queue_entries") as table:
        table.add_column(sa.Column("position", sa.Integer(), nullable=True))


def _index(table: str, name: str, column: str, schema: sa.Inspector) -> None:
    if name not in {index["name"] for index in schema.get_indexes(table)}:
        op.create_index(name, table, [column])
