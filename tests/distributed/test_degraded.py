"""With no worker node alive, a scale-out web node says it is degraded and a waiting user is told why; a worker
that comes up runs the job."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.distributed.test_worker import worker
from tests.helpers.server import start_server
from tests.helpers.services import postgres_database, redis_namespace, scale_out_env
from tests.jobs.conftest import pause_workflow
from tests.server.conftest import Client, png_bytes, read_until_final

pytestmark = [pytest.mark.scaleout, pytest.mark.slow]


def test_no_worker_is_said_to_the_operator_and_to_the_waiting_user(tmp_path: Path) -> None:
    with postgres_database() as database, redis_namespace() as (broker, prefix):
        env = scale_out_env(database, broker, prefix)
        web = start_server(tmp_path / "web", env, ready=lambda health: "status" in health)
        try:
            health = httpx.get(f"{web.url}/healthz").json()
            assert health["status"] == "degraded" and "No worker" in health["reason"] and health["worker_nodes"] == 0
            client = Client(web)
            job_id = client.submit(png_bytes(40, 30), workflow=pause_workflow(0.2))["job_id"]
            with client.socket(f"?job_id={job_id}") as ws:
                heard = []
                while not any("No worker is running" in e["message"] for e in heard):
                    heard.append(json.loads(ws.recv(timeout=10)))
                told = heard[-1]
                assert told["type"] == "queued" and told["live"] is True and told["position"] == 1
                assert told["seq"] == max(e["seq"] for e in heard)  # a live event repeats the last recorded seq
                (tmp_path / "worker").mkdir()
                with worker(database, broker, prefix, tmp_path / "worker"):
                    events = read_until_final(ws, timeout=60)
                    deadline = time.monotonic() + 20
                    while httpx.get(f"{web.url}/healthz").json()["status"] != "ok":
                        assert time.monotonic() < deadline
                        time.sleep(0.2)
            assert events[-1]["type"] == "complete"
        finally:
            web.stop()
