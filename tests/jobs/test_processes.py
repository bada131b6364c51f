"""The job system with real processes: a real server, real worker processes, real sockets."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import ClientConnection

from oldphoto.jobs.store import JobStore
from tests.helpers.server import ServerProcess, running_server, start_server
from tests.jobs.conftest import TEST_ENV, crash_workflow, pause_workflow
from tests.server.conftest import Client, png_bytes, read_until_final, recorded


def wait_final(client: Client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.http.get(f"/api/jobs/{job_id}").json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def started(client: Client, job_id: str) -> datetime:
    return datetime.fromisoformat(wait_final(client, job_id)["started_at"])


def test_fair_order_one_users_ten_jobs_do_not_starve_another(job_server: ServerProcess) -> None:
    alice, bob = Client(job_server), Client(job_server)
    image = png_bytes(32, 32)
    a_jobs = [alice.submit(image, workflow=pause_workflow(0.3))["job_id"] for _ in range(10)]
    b_job = bob.submit(image, workflow=pause_workflow(0.3))["job_id"]
    assert started(bob, b_job) < started(alice, a_jobs[2])


def test_waiting_jobs_hear_each_change_of_position(job_server: ServerProcess) -> None:
    client = Client(job_server)
    image = png_bytes(32, 32)
    jobs = [client.submit(image, workflow=pause_workflow(0.6))["job_id"] for _ in range(3)]
    events = client.follow(jobs[2])
    positions = [e["position"] for e in events if e["type"] == "queued"]
    assert positions == sorted(positions, reverse=True) and positions[-1] == 1 and len(positions) >= 2
    assert events[-1]["type"] == "complete"


def test_cancel_a_queued_job_at_once_and_a_running_one_within_half_a_second(job_server: ServerProcess) -> None:
    client = Client(job_server)
    image = png_bytes(32, 32)
    running = client.submit(image, workflow=pause_workflow(20))["job_id"]
    queued = client.submit(image, workflow=pause_workflow(1))["job_id"]
    assert client.http.delete(f"/api/jobs/{queued}").status_code == 202
    assert client.http.get(f"/api/jobs/{queued}").json()["status"] == "cancelled"
    with client.socket(f"?job_id={running}") as ws:
        while json.loads(ws.recv(timeout=30))["stage"] != "inference":
            pass
        asked = time.monotonic()
        ws.send(json.dumps({"type": "cancel", "job_id": running}))
        events = read_until_final(ws, 10)
        latency = time.monotonic() - asked
    assert events[-1]["type"] == "cancelled"
    assert latency < 1.0, f"cancel took {latency:.3f} s"
    finished = client.http.delete(f"/api/jobs/{running}")
    assert finished.status_code == 202  # cancelling twice is harmless


def test_cancelling_a_finished_job_is_a_conflict(job_server: ServerProcess) -> None:
    client = Client(job_server)
    job = client.submit(png_bytes(32, 32), workflow=pause_workflow(0.05))["job_id"]
    assert wait_final(client, job)["status"] == "succeeded"
    response = client.http.delete(f"/api/jobs/{job}")
    assert response.status_code == 409 and response.json()["code"] == "already_finished"


# A worker that dies is noticed by the pool's next health check (every 0.2 s): its job must fail at once, not wait
# for the job's time limit or a reader's patience.
CRASH_REPORTED_WITHIN_S = 5


def follow_crash(client: Client, job_id: str) -> dict:
    """The crashed job's final event, which must come within CRASH_REPORTED_WITHIN_S of its start (its first event
    of a running stage, or its status read as running, whichever is seen first)."""
    with client.socket(f"?job_id={job_id}") as ws:
        deadline = time.monotonic() + 60  # to start: jobs ahead of it may still be running
        began: float | None = None
        while True:
            try:
                event = json.loads(ws.recv(timeout=max(0.01, min(0.5, deadline - time.monotonic()))))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    status = client.http.get(f"/api/jobs/{job_id}").json()["status"]
                    said = f"{CRASH_REPORTED_WITHIN_S} s after the crash job started" if began else "60 s after it was submitted"
                    raise AssertionError(f"no final event {said} (status {status})") from None
                if began is None and client.http.get(f"/api/jobs/{job_id}").json()["status"] == "running":
                    began = time.monotonic()
                    deadline = began + CRASH_REPORTED_WITHIN_S
                continue
            if began is None and event["stage"] not in ("upload", "queued"):
                began = time.monotonic()  # the job runs: the Crash node ends its worker right away
                deadline = began + CRASH_REPORTED_WITHIN_S
            if event["type"] in ("complete", "error", "cancelled"):
                return event


def test_a_crashing_worker_fails_only_its_own_job(job_server: ServerProcess) -> None:
    client = Client(job_server)
    image = png_bytes(32, 32)
    crash = client.submit(image, workflow=crash_workflow())["job_id"]
    after = client.submit(image, workflow=pause_workflow(0.1))["job_id"]
    crashed = follow_crash(client, crash)
    assert crashed["type"] == "error" and crashed["code"] == "worker_crashed" and crashed["progress"] == 0
    assert wait_final(client, after)["status"] == "succeeded"
    assert httpx.get(f"{job_server.url}/healthz").json()["workers"] == 1


def test_limits_refuse_with_clear_codes(tmp_path: Path) -> None:
    env = {**TEST_ENV, "OLDPHOTO_USER_CONCURRENCY": "2", "OLDPHOTO_QUEUE_MAX": "2"}
    with running_server(tmp_path, env) as server:
        alice, bob, carol = Client(server), Client(server), Client(server)
        image = png_bytes(32, 32)
        for _ in range(2):
            alice.submit(image, workflow=pause_workflow(5))
        refused = alice.http.post("/api/jobs", files={"file": ("p.png", image)}, data={"workflow": pause_workflow(1)})
        assert refused.status_code == 429 and refused.json()["code"] == "user_limit"
        assert int(refused.headers["Retry-After"]) > 0
        bob.submit(image, workflow=pause_workflow(1))  # alice: one running, one waiting; bob's makes two waiting
        full = carol.http.post("/api/jobs", files={"file": ("p.png", image)}, data={"workflow": pause_workflow(1)})
        assert full.status_code == 503 and full.json()["code"] == "queue_full" and "Retry-After" in full.headers


def test_a_stuck_job_ends_with_timeout(tmp_path: Path) -> None:
    with running_server(tmp_path, {**TEST_ENV, "OLDPHOTO_JOB_TIMEOUT_S": "1.5"}) as server:
        client = Client(server)
        job = client.submit(png_bytes(32, 32), workflow=pause_workflow(30))["job_id"]
        final = client.follow(job)[-1]
        assert final["type"] == "error" and final["code"] == "timeout"
        assert wait_final(client, client.submit(png_bytes(32, 32), workflow=pause_workflow(0.1))["job_id"])["status"] == "succeeded"


def test_kill_9_then_restart_loses_no_job_and_no_event(tmp_path: Path) -> None:
    server = start_server(tmp_path, TEST_ENV)
    client = Client(server)
    image = png_bytes(32, 32)
    jobs = [client.submit(image, workflow=pause_workflow(1.5))["job_id"] for _ in range(3)]
    with client.socket(f"?job_id={jobs[0]}") as ws:
        seen = []
        while not seen or seen[-1]["stage"] != "inference":
            seen.append(json.loads(ws.recv(timeout=30)))
    server.stop(signal.SIGKILL)
    restarted = start_server(tmp_path, TEST_ENV, port=server.port)
    try:
        client.http = httpx.Client(base_url=restarted.url, headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
        for job in jobs:
            assert wait_final(client, job)["status"] == "succeeded"
        rest = client.follow(jobs[0], after_seq=seen[-1]["seq"])
        seqs = [e["seq"] for e in recorded(seen + rest)]
        assert seqs == list(range(1, len(seqs) + 1))
        for job in jobs[1:]:
            events = recorded(client.follow(job))
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert events[-1]["type"] == "complete"
    finally:
        restarted.stop()


def attempts(server: ServerProcess, job_id: str) -> int:
    """The job's spent retries, read from the server's SQLite store while it is stopped."""
    store = JobStore(f"sqlite:///{server.data_dir / 'jobs.sqlite3'}")
    try:
        job = store.get(job_id)
        assert job is not None
        return job.attempts
    finally:
        store.close()


def until_stage(ws: ClientConnection, stage: str) -> list[dict]:
    seen = [json.loads(ws.recv(timeout=30))]
    while seen[-1]["stage"] != stage:
        seen.append(json.loads(ws.recv(timeout=30)))
    return seen


def test_a_sigterm_drains_the_running_job_finishes_followed_then_sockets_close_going_away(tmp_path: Path) -> None:
    server = start_server(tmp_path, {**TEST_ENV, "OLDPHOTO_DRAIN_GRACE_S": "30"})
    client = Client(server)
    running = client.submit(png_bytes(32, 32), workflow=pause_workflow(2))["job_id"]
    waiting = client.submit(png_bytes(32, 32), workflow=pause_workflow(0.1))["job_id"]  # the one worker is busy
    ws = client.socket(f"?job_id={running}")
    seen = until_stage(ws, "inference")
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    seen += read_until_final(ws, 30)
    assert seen[-1]["type"] == "complete"  # followed to its end while the server drained
    with pytest.raises(Exception):
        while True:
            ws.recv(timeout=5)
    code = server.process.wait(15)
    took = time.monotonic() - began
    assert ws.close_code == 1001  # going away: the page reconnects
    assert code == 0 and took < 8, f"exit {code} after {took:.1f} s"
    assert attempts(server, waiting) == 0
    restarted = start_server(tmp_path, TEST_ENV, port=server.port)
    try:
        client.http = httpx.Client(base_url=restarted.url, headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
        assert wait_final(client, running)["status"] == "succeeded"
        assert wait_final(client, waiting)["status"] == "succeeded"  # it never started: it waited for the restart
    finally:
        restarted.stop()


def test_while_draining_healthz_says_so_and_an_admitted_job_waits_for_the_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path, {**TEST_ENV, "OLDPHOTO_DRAIN_GRACE_S": "30"})
    client = Client(server)
    running = client.submit(png_bytes(32, 32), workflow=pause_workflow(3))["job_id"]
    with client.socket(f"?job_id={running}") as ws:
        until_stage(ws, "inference")
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while (health := client.http.get("/healthz")).status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert health.status_code == 503 and health.json()["status"] == "draining", health.text
        late = client.submit(png_bytes(32, 32), workflow=pause_workflow(0.1))["job_id"]
        read_until_final(ws, 30)
    assert client.http.get(f"/api/jobs/{late}").json()["status"] == "queued"
    assert server.process.wait(15) == 0
    restarted = start_server(tmp_path, TEST_ENV, port=server.port)
    try:
        client.http = httpx.Client(base_url=restarted.url, headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
        assert wait_final(client, late)["status"] == "succeeded"
    finally:
        restarted.stop()


@pytest.mark.parametrize("how", ["grace spent", "second signal"])
def test_a_job_still_running_when_the_drain_ends_is_handed_back_at_once_without_spending_its_retry(tmp_path: Path, how: str) -> None:
    grace = "1" if how == "grace spent" else "30"
    server = start_server(tmp_path, {**TEST_ENV, "OLDPHOTO_DRAIN_GRACE_S": grace})
    client = Client(server)
    job = client.submit(png_bytes(32, 32), workflow=pause_workflow(20))["job_id"]
    with client.socket(f"?job_id={job}") as ws:
        until_stage(ws, "inference")
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    if how == "second signal":
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(15)
    took = time.monotonic() - began
    assert took < 6, f"exit {code} after {took:.1f} s"
    assert attempts(server, job) == 0  # handed back, not failed: its one retry is still there
    restarted = start_server(tmp_path, TEST_ENV, port=server.port)
    try:
        client.http = httpx.Client(base_url=restarted.url, headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
        with client.socket(f"?job_id={job}") as ws:
            until_stage(ws, "inference")  # running again after the restart
        assert client.http.delete(f"/api/jobs/{job}").status_code == 202
    finally:
        restarted.stop()


def test_finished_jobs_are_removed_after_the_retention_time(tmp_path: Path) -> None:
    with running_server(tmp_path, {**TEST_ENV, "OLDPHOTO_RETENTION_HOURS": "0.0005"}) as server:
        client = Client(server)
        job = client.submit(png_bytes(32, 32), workflow=pause_workflow(0.05))["job_id"]
        assert wait_final(client, job)["status"] == "succeeded"
        deadline = time.monotonic() + 15
        while client.http.get(f"/api/jobs/{job}").status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert client.http.get(f"/api/jobs/{job}").status_code == 404
        assert not list((tmp_path / "results").iterdir()) and not list((tmp_path / "inputs").iterdir())


def test_with_batching_on_one_worker_runs_several_jobs_at_once(tmp_path: Path) -> None:
    with running_server(tmp_path, {**TEST_ENV, "OLDPHOTO_BATCH_MAX": "2"}) as server:
        client = Client(server)
        image = png_bytes(32, 32)
        first, second = (client.submit(image, workflow=pause_workflow(1.5))["job_id"] for _ in range(2))
        a, b = wait_final(client, first), wait_final(client, second)
        assert a["status"] == b["status"] == "succeeded"
        assert datetime.fromisoformat(b["started_at"]) < datetime.fromisoformat(a["finished_at"])
        crash = client.submit(image, workflow=crash_workflow())["job_id"]
        assert follow_crash(client, crash)["code"] == "worker_crashed"
        assert wait_final(client, client.submit(image, workflow=pause_workflow(0.1))["job_id"])["status"] == "succeeded"


def test_with_batching_a_timeout_tells_the_job_beside_it_that_the_worker_restarted(tmp_path: Path) -> None:
    with running_server(tmp_path, {**TEST_ENV, "OLDPHOTO_BATCH_MAX": "2", "OLDPHOTO_JOB_TIMEOUT_S": "3"}) as server:
        client = Client(server)
        image = png_bytes(32, 32)
        stuck = client.submit(image, workflow=pause_workflow(30))["job_id"]
        with client.socket(f"?job_id={stuck}") as ws:
            while json.loads(ws.recv(timeout=30))["stage"] != "inference":
                pass
        time.sleep(1.0)  # the second job's own limit is still well away when the first one's runs out
        beside = client.submit(image, workflow=pause_workflow(30))["job_id"]
        assert client.follow(stuck)[-1]["code"] == "timeout"
        final = client.follow(beside)[-1]
        assert final["type"] == "error" and final["code"] == "worker_restarted"
        assert final["error"] == "Another job in the same worker ran out of time and the worker was restarted; please try again."
        assert wait_final(client, client.submit(image, workflow=pause_workflow(0.1))["job_id"])["status"] == "succeeded"
