"""/metrics after real jobs (issue 13, item 3): stage durations, queue waits, jobs by final status, events sent and
coalesced, all as this embedded server counted them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.images import png_bytes
from tests.helpers.server import ServerProcess, start_server
from tests.server.conftest import Client, read_until_final

FINAL = {"succeeded", "failed", "cancelled"}


def pause(seconds: float) -> str:
    return json.dumps(
        {
            "a": {"class_type": "LoadImage", "inputs": {}},
            "b": {"class_type": "Pause", "inputs": {"image": ["a", 0], "seconds": seconds}},
            "c": {"class_type": "SaveImage", "inputs": {"images": ["b", 0]}},
        }
    )


FAIL = json.dumps(
    {
        "a": {"class_type": "LoadImage", "inputs": {}},
        "b": {"class_type": "Fail", "inputs": {"image": ["a", 0]}},
        "c": {"class_type": "SaveImage", "inputs": {"images": ["b", 0]}},
    }
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"OLDPHOTO_TEST_NODES": "1", "OLDPHOTO_WORKERS": "1", "OLDPHOTO_USER_CONCURRENCY": "5"}
    process = start_server(tmp_path_factory.mktemp("telemetry"), env)
    yield process
    process.stop()


def samples(server: ServerProcess) -> dict[str, float]:
    """Every sample of /metrics, keyed by its name and labels as written."""
    text = httpx.get(f"{server.url}/metrics").text
    return {m[1]: float(m[2]) for m in re.finditer(r"^(\S+?(?:\{[^}]*\})?) (\S+)$", text, re.MULTILINE) if not m[0].startswith("#")}


def wait_status(http: httpx.Client, job_id: str, wanted: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"/api/jobs/{job_id}").json()["status"]
        if status in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not {wanted} within {timeout}s")


def test_a_job_s_stages_queue_wait_and_end_are_counted(server: ServerProcess) -> None:
    client = Client(server)
    before = samples(server)
    job = client.submit(png_bytes(32, 32), workflow=pause(0.6))["job_id"]
    events = client.follow(job)
    assert events[-1]["type"] == "complete"
    after = samples(server)

    assert after['oldphoto_jobs_finished_total{status="succeeded"}'] == before.get('oldphoto_jobs_finished_total{status="succeeded"}', 0) + 1
    waited = after["oldphoto_queue_wait_seconds_count"] - before.get("oldphoto_queue_wait_seconds_count", 0)
    assert waited == 1
    assert 0 <= after["oldphoto_queue_wait_seconds_sum"] < 30
    # The Pause node's stage, the last (so it holds the save), lasted about its 0.6 s; +Inf holds every observation.
    paused = 'oldphoto_stage_duration_seconds_sum{node_type="Pause",stage="inference+save"}'
    count = 'oldphoto_stage_duration_seconds_count{node_type="Pause",stage="inference+save"}'
    assert after[count] - before.get(count, 0) == 1
    assert 0.5 <= after[paused] - before.get(paused, 0) < 10
    assert after['oldphoto_stage_duration_seconds_bucket{le="+Inf",node_type="Pause",stage="inference+save"}'] == after[count]
    # The follower heard at least the job's recorded events through this process's streams.
    recorded = [e for e in events if not e.get("live")]
    assert after["oldphoto_events_sent_total"] - before.get("oldphoto_events_sent_total", 0) >= len(recorded)
    assert "oldphoto_events_coalesced_total" in after


def test_cancelled_jobs_are_counted_under_their_status_running_or_queued(server: ServerProcess) -> None:
    client = Client(server)
    key = 'oldphoto_jobs_finished_total{status="cancelled"}'
    before = samples(server).get(key, 0)
    running = client.submit(png_bytes(32, 32), workflow=pause(30))["job_id"]
    wait_status(client.http, running, {"running"})
    queued = client.submit(png_bytes(32, 32), workflow=pause(30))["job_id"]  # one worker: it waits
    assert client.http.delete(f"/api/jobs/{queued}").status_code == 202
    assert client.http.delete(f"/api/jobs/{running}").status_code == 202
    assert wait_status(client.http, queued, FINAL) == "cancelled"
    assert wait_status(client.http, running, FINAL) == "cancelled"
    assert samples(server)[key] == before + 2


def test_every_line_of_the_server_log_is_a_json_object_and_job_lines_name_their_job(server: ServerProcess) -> None:
    client = Client(server)
    job = client.submit(png_bytes(32, 32), workflow=pause(0.1))["job_id"]
    assert client.follow(job)[-1]["type"] == "complete"
    # A job whose code fails: the worker process logs it with its traceback, in the same format, on one line.
    failing = client.submit(png_bytes(32, 32), workflow=FAIL)["job_id"]
    assert client.follow(failing)[-1]["type"] == "error"
    time.sleep(0.2)
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "message"} <= record.keys() for record in records)
    failed = [r for r in records if r.get("job_id") == failing and "exc_info" in r]
    assert failed and "RuntimeError: the Fail test node failed on purpose" in failed[0]["exc_info"], failed
    ended = [r for r in records if r.get("job_id") == job]
    assert ended and ended[-1]["message"] == f"job {job} succeeded" and ended[-1]["logger"] == "oldphoto.jobs.recorder"


def test_a_follower_who_asks_sees_the_jobs_memory_and_speed_live_and_its_summary_at_the_end(server: ServerProcess) -> None:
    client = Client(server)
    job = client.submit(png_bytes(32, 32), workflow=pause(2.5))["job_id"]
    with client.socket(f"?job_id={job}&metrics=1") as asked, client.socket(f"?job_id={job}") as plain:
        events = read_until_final(asked)
        others = read_until_final(plain)
    assert not [e for e in others if e["type"] == "metrics"], "metrics went to a reader who did not ask"
    live = [(i, e) for i, e in enumerate(events) if e["type"] == "metrics"]
    assert len(live) >= 2, f"{len(live)} metrics events in a 2.5 s job"
    last_seq = 0
    for i, event in enumerate(events):
        if event["type"] == "metrics":
            assert event["live"] is True and event["seq"] == last_seq and event["job_id"] == job  # repeats the last seq
        else:
            last_seq = event["seq"]
    usage = [e["metrics"] for _, e in live]
    assert [u["elapsed_s"] for u in usage] == sorted(u["elapsed_s"] for u in usage)
    assert all(u["peak_rss_bytes"] >= u["rss_bytes"] > 10 * 2**20 for u in usage)
    moving = [u["speed"] for u in usage if "speed" in u]
    assert moving and moving[-1]["unit"] == "step" and moving[-1]["node"] == "b"
    assert any(15 <= (s.get("per_s") or 0) <= 25 for s in moving), moving  # 50 ms a step: about 20 a second

    summary = events[-1]["metrics"]
    assert events[-1]["type"] == "complete" and summary == client.http.get(f"/api/jobs/{job}").json()["metrics"]
    assert summary["peak_rss_bytes"] >= max(u["peak_rss_bytes"] for u in usage[:-1])
    paused = [s for s in summary["stages"] if s["node"] == "b" and s["stage"] == "inference"]
    assert len(paused) == 1 and 2.3 <= paused[0]["seconds"] < 10
    (speed,) = summary["speeds"]
    assert (speed["node"], speed["unit"], speed["done"]) == ("b", "step", 50) and 15 <= speed["per_s"] <= 21


def test_sse_sends_metrics_to_who_asks_as_events_without_an_id(server: ServerProcess) -> None:
    client = Client(server)
    job = client.submit(png_bytes(32, 32), workflow=pause(1.5))["job_id"]
    lines: list[str] = []
    with client.http.stream("GET", f"/api/jobs/{job}/events?metrics=1") as response:
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("data: ") and json.loads(line[6:])["type"] == "complete":
                break
    told = [i for i, line in enumerate(lines) if line.startswith("data: ") and json.loads(line[6:])["type"] == "metrics"]
    assert told and all(not lines[i - 1].startswith("id: ") for i in told)
