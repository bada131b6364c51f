"""The whole scale-out mode as real processes: two `oldphoto serve` web nodes and two `oldphoto worker` processes
on one PostgreSQL and one Redis. A job admitted on one node is followed on the other with every event in order, a
queued client is told its place, and a cancel sent to either node stops the job wherever it runs."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.distributed.test_worker import worker
from tests.helpers.server import ServerProcess, start_server
from tests.helpers.services import postgres_database, redis_namespace
from tests.jobs.conftest import pause_workflow
from tests.server.conftest import Client, png_bytes, read_until_final, recorded

pytestmark = [pytest.mark.scaleout, pytest.mark.slow]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Every node with a data dir of its own, as on separate machines: photos travel through the database."""
    with postgres_database() as database, redis_namespace() as (broker, prefix), ExitStack() as stack:
        env = {
            "OLDPHOTO_DATABASE_URL": database,
            "OLDPHOTO_BROKER_URL": broker,
            "OLDPHOTO_BROKER_PREFIX": prefix,
            "OLDPHOTO_JWT_SECRET": secrets.token_urlsafe(32),  # one key for every node
            "OLDPHOTO_TEST_NODES": "1",
            "OLDPHOTO_USER_CONCURRENCY": "10",
        }
        web = [start_server(tmp_path / f"web-{i}", env, ready=lambda health: "status" in health) for i in range(2)]
        for node in web:
            stack.callback(node.stop)
        for i in range(2):
            (tmp_path / f"worker-{i}").mkdir()
            stack.enter_context(worker(database, broker, prefix, tmp_path / f"worker-{i}"))
        yield web[0], web[1]


def same_user_on(server: ServerProcess, client: Client) -> Client:
    other = Client.__new__(Client)
    other.server, other.token = server, client.token
    other.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
    return other


def test_a_job_admitted_on_one_node_is_followed_on_the_other_gap_free(nodes: tuple[ServerProcess, ServerProcess]) -> None:
    on_first = Client(nodes[0])
    on_second = same_user_on(nodes[1], on_first)
    jobs = [on_first.submit(png_bytes(40, 30), workflow=pause_workflow(0.5))["job_id"] for _ in range(3)]
    for job_id in jobs:
        events = recorded(on_second.follow(job_id, timeout=60))
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[0]["stage"] == "upload" and events[-1]["type"] == "complete"
        assert any(e["type"] == "queued" and e["position"] >= 1 for e in events)
        result = on_second.http.get(events[-1]["result_url"])
        assert result.status_code == 200 and result.headers["content-type"] == "image/png"
        assert on_first.http.get(f"/api/jobs/{job_id}").json()["status"] == "succeeded"


def test_a_cancel_sent_to_either_node_stops_the_job_where_it_runs(nodes: tuple[ServerProcess, ServerProcess]) -> None:
    on_first = Client(nodes[0])
    on_second = same_user_on(nodes[1], on_first)
    job_id = on_second.submit(png_bytes(40, 30), workflow=pause_workflow(30))["job_id"]
    with on_second.socket(f"?job_id={job_id}") as ws:
        while json.loads(ws.recv(timeout=60))["type"] != "progress":
            pass  # running on a worker now
        asked = time.monotonic()
        assert on_first.http.delete(f"/api/jobs/{job_id}").status_code in (200, 202)
        events = read_until_final(ws, timeout=20)
    assert events[-1]["type"] == "cancelled" and time.monotonic() - asked < 5
    assert on_first.http.get(f"/api/jobs/{job_id}").json()["status"] == "cancelled"


def test_a_queued_job_is_told_its_place_and_can_be_cancelled_from_the_other_node(nodes: tuple[ServerProcess, ServerProcess]) -> None:
    on_first = Client(nodes[0])
    on_second = same_user_on(nodes[1], on_first)
    blockers = [on_first.submit(png_bytes(40, 30), workflow=pause_workflow(30))["job_id"] for _ in range(2)]
    deadline = time.monotonic() + 60
    while any(on_first.http.get(f"/api/jobs/{job}").json()["status"] != "running" for job in blockers):
        assert time.monotonic() < deadline, "the two workers never took the blockers"
        time.sleep(0.1)
    waiting = on_second.submit(png_bytes(40, 30), workflow=pause_workflow(1))
    assert waiting["position"] == 1
    with on_first.socket(f"?job_id={waiting['job_id']}") as ws:
        first = [json.loads(ws.recv(timeout=10)) for _ in range(2)]
        assert [e["type"] for e in first] == ["progress", "queued"] and first[1]["position"] == 1
        assert on_second.http.delete(f"/api/jobs/{waiting['job_id']}").status_code in (200, 202)
        assert read_until_final(ws, timeout=10)[-1]["type"] == "cancelled"
    for job in blockers:
        on_second.http.delete(f"/api/jobs/{job}")


def test_a_web_node_reports_the_shared_queue_and_every_nodes_jobs(nodes: tuple[ServerProcess, ServerProcess]) -> None:
    on_first = Client(nodes[0])
    on_second = same_user_on(nodes[1], on_first)
    job_id = on_first.submit(png_bytes(40, 30), workflow=pause_workflow(0.2))["job_id"]
    assert on_second.follow(job_id, timeout=60)[-1]["type"] == "complete"
    health = httpx.get(f"{nodes[1].url}/healthz").json()
    assert health["status"] == "ok" and health["worker_nodes"] == 2 and health["workers"] == 2  # one slot each
    assert health["queued"] == 0 and health["running"] == 0
    assert 'oldphoto_jobs{status="succeeded"} 1.0' in httpx.get(f"{nodes[0].url}/metrics").text


def test_server_sent_events_on_the_other_node_stream_the_job_live(nodes: tuple[ServerProcess, ServerProcess]) -> None:
    on_first = Client(nodes[0])
    on_second = same_user_on(nodes[1], on_first)
    job_id = on_first.submit(png_bytes(40, 30), workflow=pause_workflow(1.5))["job_id"]
    seqs: list[int] = []
    with on_second.http.stream("GET", f"/api/jobs/{job_id}/events", timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event_id = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                if event.get("live"):  # a new queue place: no id, so Last-Event-ID stays the last recorded seq
                    continue
                assert event["seq"] == event_id
                seqs.append(event["seq"])
                if event["type"] in ("complete", "error", "cancelled"):
                    break
    assert event["type"] == "complete" and seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) > 10  # upload, queued, the Pause node's steps, complete


def test_rate_limits_hold_across_web_nodes(nodes: tuple[ServerProcess, ServerProcess]) -> None:
    """30 sessions a minute per address: counted in Redis, so alternating between nodes does not double it."""
    answers = [httpx.post(f"{nodes[i % 2].url}/api/session").status_code for i in range(32)]
    assert answers.count(200) <= 30 and answers[-1] == 429
