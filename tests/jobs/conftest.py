from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.helpers.server import ServerProcess, start_server

TEST_ENV = {"OLDPHOTO_TEST_NODES": "1", "OLDPHOTO_WORKERS": "1"}


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
