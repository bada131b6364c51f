"""Schema migrations: `upgrade` brings a job store to the newest revision in jobs/migrations/versions (Alembic),
safely when several nodes start at once: one migrates while the others wait for it, then find nothing left to do.

Adding a revision is adding one file to jobs/migrations/versions (docs/scaleout.md, "Schema migrations").

Alembic is imported only when there is something to migrate: a store already at the newest revision is told so by
one query, and a process that only starts (a restart, a node joining) never loads it, nor the 11 MB it keeps.
`upgrade_apart` migrates in a process of its own, so the web process never loads it at all.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config

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
        if not at_newest(engine):
            _migrate(engine)


def upgrade_apart(url: str) -> None:
    """`upgrade`, with the migrating (if any) done by a process of its own: this one never loads Alembic."""
    if at_newest(url):
        return
    # Spawned, as worker processes are: the caller may have threads, whose locks a fork would copy mid-use.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as apart:
        apart.submit(upgrade, url).result()  # its StoreUnavailable is raised here


def at_newest(target: Engine | str) -> bool:
    """Whether the database holds the newest revision, asked with one query and without Alembic.

    Only a yes is trusted: a store that cannot be read, or is being migrated right now, is a no, and `upgrade` then
    takes the lock and Alembic's own look (which says why a store cannot be reached)."""
    newest = newest_revision()
    with _engine(target) as engine:
        if newest is None or not _may_exist(engine):
            return False
        try:
            with engine.connect() as connection:
                if not inspect(connection).has_table("alembic_version"):
                    return False
                stored = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except SQLAlchemyError:
            return False
        return stored == [newest]


def newest_revision() -> str | None:
    """The one revision that no other revises, from the `revision` and `down_revision` constants of the files in
    versions/, read without running them; None where that is not exactly one (a branch, or a name it cannot read)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        constants = _constants(path)
        revision, down = constants.get("revision"), constants.get("down_revision")
        if isinstance(revision, str):
            revisions.add(revision)
        revised.update(name for name in (down if isinstance(down, tuple | list) else [down]) if isinstance(name, str))
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def _constants(path: Path) -> dict[str, object]:
    """What a file assigns to plain names at its top, where the value is a literal (`revision = "0003"`)."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            with contextlib.suppress(ValueError):  # not a literal: not a constant this reads
                found[target.id] = ast.literal_eval(value)
    return found


def _may_exist(engine: Engine) -> bool:
    """False for a SQLite file not yet made: connecting would make it, or fail where its folder is missing."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or "mode=memory" in database:
        return True
    return Path(database).is_file()


def _migrate(engine: Engine) -> None:
    try:
        with _locked(engine) as connection, connection.begin():
            _run_revisions(connection)
    except (SQLAlchemyError, OSError, StoreUnavailable) as exc:
        raise StoreUnavailable(_reason(engine, exc)) from exc


def _run_revisions(connection: Connection) -> None:
    """Alembic's part, imported only now that the store is reached and behind (a node that cannot reach its store
    says so in one line, before Alembic logs its plugins)."""
    from alembic import command
    from alembic.util import CommandError

    config = _config(connection)
    try:
        if _made_by_create_all(connection):
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
    except CommandError as exc:
        raise StoreUnavailable(_first_line(exc)) from exc


def current(target: Engine | str) -> str | None:
    """The database's revision; None for an empty one or one made by create_all and not yet migrated."""
    from alembic.migration import MigrationContext

    with _engine(target) as engine:
        try:
            with engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(_reason(engine, exc)) from exc


def head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

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
