from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from oldphoto.jobs.store import JobStore
from tests.helpers.pools import Pool
from tests.helpers.server import ServerProcess, start_server
from tests.helpers.services import postgres_database

# These tests speak as several anonymous users from one address (127.0.0.1), each a user of its own: the sharing of
# one address's sessions is tested apart (tests/server/test_fairness.py).
TEST_ENV = {"OLDPHOTO_TEST_NODES": "1", "OLDPHOTO_WORKERS": "1", "OLDPHOTO_ANONYMOUS_SHARE": "session"}


def pause_workflow(seconds: float) -> str:
    return json.dumps(
        {
            "1": {"class_type": "LoadImage", "inputs": {}},
            "2": {"class_type": "Pause", "inputs": {"image": ["1", 0], "seconds": seconds}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        }
    )


def crash_workflow() -> str:
    return json.dumps(
        {
            "1": {"class_type": "LoadImage", "inputs": {}},
            "2": {"class_type": "Crash", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        }
    )


@pytest.fixture(scope="module")
def job_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("jobs"), {**TEST_ENV, "OLDPHOTO_USER_CONCURRENCY": "20"})
    yield server
    server.stop()


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Pool]]:
    """Real worker pools started by a test (tests.helpers.pools.start), stopped after it."""
    monkeypatch.setenv("OLDPHOTO_TEST_NODES", "1")  # the Pause and Crash nodes, in the spawned workers
    started: list[Pool] = []
    yield started
    for pool in started:
        pool.pool.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.scaleout)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """An empty job store on a SQLite file, and on a fresh PostgreSQL database (the scale-out store)."""
    if request.param == "sqlite":
        store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
        yield store
        store.close()
        return
    with postgres_database() as url:
        store = JobStore(url)
        yield store
        store.close()
