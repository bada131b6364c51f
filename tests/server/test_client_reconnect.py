"""`oldphoto.client` across a server that goes away mid-job (issue 14, item 4): its `events()` reconnects with
backoff, resumes after the last seq it yielded, and yields every recorded event of the job exactly once.

The server is a real `oldphoto serve` process, stopped in the middle of a job and started again on the same port
and data dir (the job is put back in the queue and runs again); the client's socket sees the node go away (close
code 1001 on SIGTERM, a reset on SIGKILL) and then connections refused until the new process listens.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from oldphoto.client import Client
from tests.helpers.images import png_bytes
from tests.helpers.server import ServerProcess, free_port, start_server
from tests.server.test_telemetry import pause

pytestmark = pytest.mark.slow  # two server starts per test

# No drain on SIGTERM (OLDPHOTO_DRAIN_GRACE_S=0): the running job is handed back at once and the sockets close with
# 1001, so the job is cut in the middle and runs again after the restart (with a drain it would simply finish first).
ENV = {"OLDPHOTO_TEST_NODES": "1", "OLDPHOTO_WORKERS": "1", "OLDPHOTO_USER_CONCURRENCY": "5", "OLDPHOTO_DRAIN_GRACE_S": "0"}


def restart_in_the_background(server: ServerProcess, sig: int, started: list[ServerProcess]) -> threading.Thread:
    """Stops the server, leaves its port closed for a second (the client meets refused connections), starts a new
    process on the same port and data dir."""

    def restart() -> None:
        server.stop(sig)
        time.sleep(1.0)
        started.append(start_server(server.data_dir, ENV, port=server.port))

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_the_client_resumes_after_the_server_goes_away_mid_job_and_yields_every_seq_once(tmp_path: Path, sig: int) -> None:
    port = free_port()
    servers = [start_server(tmp_path / "data", ENV, port=port)]
    try:
        with Client(servers[0].url) as client:
            job = client.submit(png_bytes(32, 32), workflow=pause(2.0))["job_id"]
            events: list[dict[str, Any]] = []
            restarter: threading.Thread | None = None
            for event in client.events(job):
                events.append(event)
                # Mid-job: the job runs, its bar has moved, and more of its events are still to come.
                if restarter is None and event["type"] == "progress" and event.get("stage") == "inference" and event["progress"] > 0:
                    restarter = restart_in_the_background(servers[0], sig, servers)
            assert restarter is not None
            restarter.join(60)
    finally:
        for server in servers:
            server.stop()
    recorded = [e["seq"] for e in events if not e.get("live")]
    assert recorded == list(range(1, len(recorded) + 1)), recorded  # none twice, none skipped
    assert events[-1]["type"] == "complete", events[-1]
    # The job really was interrupted and run again: put back in the queue by the new process, after the drop.
    stages = [e["stage"] for e in events if not e.get("live")]
    assert "queued" in stages[stages.index("inference") :], stages
    assert client.transport == "ws"
