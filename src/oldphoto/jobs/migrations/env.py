"""Alembic's entry point: runs the revisions on the connection `oldphoto.jobs.migrate` hands over, inside its
transaction and under its lock (never on a connection of its own)."""

from alembic import context

from oldphoto.jobs.store import Base

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=Base.metadata,
    # SQLite changes most columns by copying the table: autogenerate writes `batch_alter_table` for it.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
