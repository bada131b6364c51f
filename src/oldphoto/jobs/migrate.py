"""Schema migrations: `upgrade` brings a job store to the newest revision in jobs/migrations/versions (Alembic),
safely when several nodes start at once: one migrates while the others wait for it, then find nothing left to do.

Adding a revision is adding one file to jobs/migrations/versions (docs/scaleout.md, "Schema migrations").
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"
# A database with these tables and no alembic_version was made by create_all (before migrations): it is stamped.
BASELINE_TABLES = ("jobs", "events", "queue_entries", "blobs", "leases", "worker_nodes", "queue_lanes")
# pg_advisory_lock's 64-bit key: "opschema" read as eight bytes (the shared queue's own key is "oldphoto").
LOCK_KEY = int.from_bytes(b"opschema", "big")


class StoreUnavailable(Exception):
    """The job store could not be reached or migrated; the message is one line, for an operator."""


def upgrade(target: Engine | str) -> None:
    """Bring the database to the newest revision (stamping one made by create_all at the baseline first)."""
    with _engine(target) as engine:
        try:
            with _locked(engine) as connection, connection.begin():
                config = _config(connection)
                if _made_by_create_all(connection):
                    command.stamp(config, BASELINE)
                command.upgrade(config, "head")
        except (SQLAlchemyError, OSError, CommandError, StoreUnavailable) as exc:
            raise StoreUnavailable(_reason(engine, exc)) from exc


def current(target: Engine | str) -> str | None:
    """The database's revision; None for an empty one or one made by create_all and not yet migrated."""
    with _engine(target) as engine:
        try:
            with engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(_reason(engine, exc)) from exc


def head() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection  # env.py runs the revisions on it
    return config


@contextmanager
def _engine(target: Engine | str) -> Iterator[Engine]:
    """The caller's engine, or one made from a URL for this call only."""
    if isinstance(target, Engine):
        yield target
        return
    try:
        engine = create_engine(target)
    except SQLAlchemyError as exc:  # not a URL, or no driver for it
        raise StoreUnavailable(f"job store URL: {_first_line(exc)}") from exc
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection that alone may migrate: the others wait for it at the lock."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            connection.commit()
            try:
                yield connection
            finally:
                _unlock(connection)
    elif engine.dialect.name == "sqlite":
        with _file_lock(engine.url.database), engine.connect() as connection, _sqlite_foreign_keys_off(connection):
            yield connection
    else:
        with engine.connect() as connection:
            yield connection


def _unlock(connection: Connection) -> None:
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
        connection.commit()
    except SQLAlchemyError:
        connection.invalidate()  # a session that may still hold the lock must not go back to the pool


def _file_lock(database: str | None) -> AbstractContextManager[None]:
    """flock on a file next to the database; an in-memory database belongs to one process and needs none."""
    if not database or database == ":memory:" or "mode=memory" in database:
        return nullcontext()
    return _flock(Path(f"{database}.migrate-lock"))


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)  # a first start: the data dir may not exist yet
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or when the process dies
        yield


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    # A batch migration on SQLite copies a table and drops the old one: with foreign keys on, dropping `jobs` would
    # delete every event by cascade. SQLite ignores this pragma inside a transaction, so it is set before one begins.
    driver = connection.connection.driver_connection
    assert driver is not None
    before = driver.execute("PRAGMA foreign_keys").fetchone()[0]
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA foreign_keys={'ON' if before else 'OFF'}")


def _made_by_create_all(connection: Connection) -> bool:
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables or "jobs" not in tables:
        return False
    missing = [name for name in BASELINE_TABLES if name not in tables]
    if missing:
        raise StoreUnavailable(f"the database has jobs but not the tables {', '.join(missing)}: it is older than the baseline migration")
    return True


def _reason(engine: Engine, exc: Exception) -> str:
    """One line: where, and the first line of what went wrong (drivers add hints on further lines)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"job store {engine.url.render_as_string(hide_password=True)}: {_first_line(cause)}"


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
