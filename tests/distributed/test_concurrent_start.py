"""Nodes start safely together (issue 10): one `oldphoto worker` and two `oldphoto serve` started at the same moment
on a fresh PostgreSQL database all come up, round after round (before migrations, create_all racing killed one of
them in 3 starts of 5)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.distributed.test_web_nodes import same_user_on
from tests.distributed.test_worker import worker
from tests.helpers.server import ServerProcess, start_server
from tests.helpers.services import postgres_database, redis_namespace, scale_out_env
from tests.jobs.conftest import pause_workflow
from tests.server.conftest import Client, png_bytes

pytestmark = [pytest.mark.scaleout, pytest.mark.slow]

ROUNDS = 5


def together(*starts: Callable[[], Any]) -> list[Any]:
    """Each start in a thread of its own, released at the same moment: what it returned, or what it raised."""
    barrier = threading.Barrier(len(starts))

    def at_once(start: Callable[[], Any]) -> Any:
        barrier.wait()
        return start()

    with ThreadPoolExecutor(len(starts)) as pool:
        futures = [pool.submit(at_once, start) for start in starts]
        return [future.exception() or future.result() for future in futures]


def worker_log(data_dir: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in data_dir.glob("worker-*.log"))


def answered(health: dict[str, Any]) -> bool:
    return health.get("status") == "ok"  # a web node of the scale-out mode has no workers of its own


@pytest.mark.parametrize("round_", range(1, ROUNDS + 1))
def test_a_worker_and_two_web_nodes_started_together_on_a_fresh_database_all_come_up(round_: int, tmp_path: Path) -> None:
    with postgres_database() as database, redis_namespace() as (broker, prefix), ExitStack() as stack:
        env = scale_out_env(database, broker, prefix)
        (tmp_path / "worker").mkdir()
        started = together(
            lambda: start_server(tmp_path / "web-a", env, ready=answered),
            lambda: start_server(tmp_path / "web-b", env, ready=answered),
            lambda: stack.enter_context(worker(database, broker, prefix, tmp_path / "worker")),
        )
        for web in started[:2]:
            if isinstance(web, ServerProcess):
                stack.callback(web.stop)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome  # a node died at start: its log is in the message
        web_a, web_b, node = started

        deadline = time.monotonic() + 60
        while httpx.get(f"{web_b.url}/healthz").json()["worker_nodes"] < 1:
            assert node.poll() is None, f"the worker exited with {node.returncode}:\n{worker_log(tmp_path / 'worker')}"
            assert time.monotonic() < deadline, "the worker never said it was alive"
            time.sleep(0.2)
        assert httpx.get(f"{web_a.url}/healthz").json()["worker_nodes"] == 1
        # Nothing lost: a job admitted on one node runs on the worker and is followed to its end on the other.
        on_a = Client(web_a)
        job_id = on_a.submit(png_bytes(40, 30), workflow=pause_workflow(0.1))["job_id"]
        assert same_user_on(web_b, on_a).follow(job_id, timeout=60)[-1]["type"] == "complete"
        assert node.poll() is None and web_a.process.poll() is None and web_b.process.poll() is None
