"""Schema migrations on both databases: the migrated schema is the models' schema, several processes may migrate at
once, a database made by create_all is stamped and carried on, and a new revision is one more file."""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect, text

from oldphoto.jobs import migrate
from oldphoto.jobs.sharedqueue import SharedQueue
from oldphoto.jobs.store import Base, EventRow, JobStore, NewJob
from tests.helpers.services import postgres_database
from tests.jobs.test_store import upload_event


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.scaleout)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'jobs.sqlite3'}"
        return
    with postgres_database() as database:
        yield database


def schema_diff(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()


def test_the_migrated_schema_is_the_models_schema(url: str) -> None:
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head() == migrate.newest_revision() == "0005"
    assert schema_diff(url) == []


def alembic_loaded_by(code: str, url: str) -> bool:
    """Whether a fresh interpreter has Alembic loaded after running `code` (with `migrate` and `url` given)."""
    script = f"import sys\nfrom oldphoto.jobs import migrate\nurl = {url!r}\n{code}\nprint('alembic' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()[-1] == "True"


def test_a_store_already_at_the_newest_revision_is_left_alone_without_alembic(url: str) -> None:
    migrate.upgrade(url)
    assert migrate.at_newest(url)
    assert not alembic_loaded_by("migrate.upgrade(url)", url)  # every restart of a node
    assert alembic_loaded_by("migrate.upgrade(url); migrate.head()", url)  # the check can see it loaded


def test_migrating_apart_leaves_alembic_out_of_the_caller(url: str) -> None:
    assert not alembic_loaded_by("migrate.upgrade_apart(url); assert migrate.at_newest(url)", url)
    assert migrate.current(url) == migrate.head()
    assert schema_diff(url) == []


def _upgrade_after(barrier: multiprocessing.synchronize.Barrier, url: str) -> None:
    barrier.wait(timeout=60)
    migrate.upgrade(url)


def test_several_processes_migrate_one_new_database_at_the_same_moment(url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    processes = [context.Process(target=_upgrade_after, args=(barrier, url)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    assert migrate.current(url) == migrate.head()
    assert schema_diff(url) == []


def test_a_database_made_by_create_all_is_stamped_and_keeps_its_jobs(url: str) -> None:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir()
    engine = create_engine(url)
    Base.metadata.create_all(engine)  # what JobStore did before migrations
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO jobs (id, owner, status, stage, progress, message_key, message_params, workflow, input_path, attempts, last_seq, created_at) VALUES ('old', 'u', 'queued', 'upload', 0, 'upload', '{}', '{}', 'x', 0, 1, CURRENT_TIMESTAMP)"))
    engine.dispose()
    assert migrate.current(url) is None
    store = JobStore(url)
    try:
        assert store.get("old") is not None
    finally:
        store.close()
    assert migrate.current(url) == migrate.head()
    assert schema_diff(url) == []


def test_a_database_older_than_the_baseline_is_refused_unchanged(url: str) -> None:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir()
    engine = create_engine(url)
    Base.metadata.create_all(engine, tables=[Base.metadata.tables["jobs"], Base.metadata.tables["events"]])
    engine.dispose()
    with pytest.raises(migrate.StoreUnavailable, match="queue_entries, blobs, leases, worker_nodes, queue_lanes"):
        migrate.upgrade(url)
    with pytest.raises(migrate.StoreUnavailable, match="queue_entries, blobs, leases, worker_nodes, queue_lanes"):
        migrate.upgrade_apart(url)  # told by the process that tried
    assert migrate.current(url) is None


REVISION_NEXT = '''
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    # SQLite cannot change a column in place: batch mode copies `jobs`, drops it and renames the copy.
    with op.batch_alter_table("jobs", recreate="always") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
'''


def test_a_new_revision_is_one_file_and_copying_jobs_on_sqlite_keeps_their_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    job = store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event())
    migrations = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, migrations)
    (migrations / "versions" / "0006_note.py").write_text(REVISION_NEXT)
    monkeypatch.setattr(migrate, "MIGRATIONS", migrations)

    assert not migrate.at_newest(store.engine)  # the new file is read as Alembic reads it
    migrate.upgrade(store.engine)

    assert migrate.current(store.engine) == migrate.head() == migrate.newest_revision() == "0006"
    assert "note" in {column["name"] for column in inspect(store.engine).get_columns("jobs")}
    assert [e.seq for e in store.events_after(job.id)] == [1]  # not deleted by cascade when `jobs` was dropped
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again for the store
        with pytest.raises(Exception, match="FOREIGN KEY"):
            connection.execute(insert(EventRow).values(job_id="no-such-job", seq=1, body="{}"))
    store.close()


def test_an_in_memory_database_is_migrated_without_a_lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = JobStore("sqlite://")
    try:
        assert migrate.current(store.engine) == migrate.head()
    finally:
        store.close()
    assert list(tmp_path.iterdir()) == []


def test_waiting_jobs_keep_their_turn_across_the_move_to_live_places(url: str) -> None:
    """0002 drops the announced place of each waiting job (places are live now) and keeps the rest."""
    from alembic import command

    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir()
    engine = create_engine(url)
    with engine.begin() as connection:
        config = migrate._config(connection)
        command.upgrade(config, "0001")
        connection.execute(
            text(
                "INSERT INTO jobs (id, owner, status, stage, progress, message_key, message_params, workflow, input_path, attempts,"
                " last_seq, created_at) VALUES ('j1', 'u', 'queued', 'queued', 0, 'queued', '{}', '{}', 'x', 0, 1, '2026-11-29')"
            )
        )
        connection.execute(text("INSERT INTO queue_lanes (owner, turn) VALUES ('u', 1)"))
        connection.execute(text("INSERT INTO queue_entries (job_id, owner, ticket, position) VALUES ('j1', 'u', 1, 1)"))
    engine.dispose()
    migrate.upgrade(url)
    assert migrate.current(url) == "0005" and schema_diff(url) == []
    store = JobStore(url)
    assert SharedQueue(store).positions() == {"j1": 1} and store.get("j1").share is None
    store.close()
