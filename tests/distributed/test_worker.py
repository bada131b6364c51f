"""`oldphoto worker` processes against a real PostgreSQL and Redis: jobs admitted into the shared store and queue
run to their end with a gap-free event log, their events reach a web node's bus live, users take turns across
workers, and a cancel published on Redis stops a running job."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, select

from oldphoto.distributed.events import RedisBus
from oldphoto.distributed.worker import request_cancel
from oldphoto.jobs.admission import AdmissionRules
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.sharedqueue import SharedQueue
from oldphoto.jobs.store import Job, JobStore, LeaseRow, NewJob
from oldphoto.protocol import JobEvent
from oldphoto.server.follow import Follower
from oldphoto.server.outbox import Outbox
from tests.helpers.images import png_bytes
from tests.helpers.server import free_port, run_async
from tests.helpers.services import postgres_database, redis_namespace
from tests.jobs.conftest import crash_workflow, pause_workflow

pytestmark = [pytest.mark.scaleout, pytest.mark.slow]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[JobStore, str, str, Path]]:
    with postgres_database() as database, redis_namespace() as (broker, prefix):
        store = JobStore(database)
        yield store, database, broker, prefix, tmp_path  # type: ignore[misc]
        store.close()


@contextmanager
def worker(
    database: str, broker: str, prefix: str, data_dir: Path, lease_s: float = 30, extra: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **(extra or {}),
        "OLDPHOTO_LEASE_S": str(lease_s),
        **os.environ,
        "OLDPHOTO_DATABASE_URL": database,
        "OLDPHOTO_BROKER_URL": broker,
        "OLDPHOTO_BROKER_PREFIX": prefix,
        "OLDPHOTO_DATA_DIR": str(data_dir),
        "OLDPHOTO_TEST_NODES": "1",
        "OLDPHOTO_WORKERS": "1",
    }
    log = open(data_dir / f"worker-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "oldphoto", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(20)
        log.close()


def admit(store: JobStore, queue: SharedQueue, data_dir: Path, owner: str, seconds: float, workflow: str | None = None) -> str:
    """What a web node does on POST /api/jobs, as far as the store and the queue go (a Pause of `seconds`, or
    `workflow`)."""
    (data_dir / "inputs").mkdir(parents=True, exist_ok=True)
    source = data_dir / "inputs" / f"{owner}-{time.monotonic_ns()}.png"
    source.write_bytes(png_bytes(48, 32))
    new = NewJob(owner=owner, workflow=workflow or pause_workflow(seconds), input_path=str(source))
    job, _, _ = queue.admit(new, AdmissionRules(user_concurrency=100), source.read_bytes())
    source.unlink()  # the worker must take the photo from the database
    return job.id


def history(store: JobStore) -> Callable[[str, int], Awaitable[list[JobEvent]]]:
    """The log as a web node reads it: off the loop."""

    async def read(job_id: str, after: int) -> list[JobEvent]:
        return await asyncio.to_thread(store.events_after, job_id, after)

    return read


def outbox_final(seen: list[int], store: JobStore, job_id: str) -> bool:
    """True while the follower has not yet heard the job's last event."""
    job = store.get(job_id)
    return job is None or not job.status.is_final or seen[-1] < job.last_seq


def wait_until(store: JobStore, job_id: str, reached: Callable[[Job], bool], what: str, timeout: float) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job is not None and reached(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} {what} within {timeout}s: {store.get(job_id)}")


def wait_final(store: JobStore, job_id: str, timeout: float = 90) -> Job:
    return wait_until(store, job_id, lambda job: job.status.is_final, "did not finish", timeout)


def wait_status(store: JobStore, job_id: str, status: JobStatus, timeout: float = 60) -> Job:
    return wait_until(store, job_id, lambda job: job.status == status, f"not {status}", timeout)


def test_two_workers_run_every_job_with_a_gap_free_log_and_users_take_turns(deployment: tuple) -> None:
    store, database, broker, prefix, data_dir = deployment
    queue = SharedQueue(store)
    jobs = [admit(store, queue, data_dir, owner, 0.3) for owner in ("ann", "ann", "ann", "bob")]

    async def web_node_follows(job_id: str) -> list[int]:
        """A web node's bus and follower, as `/ws/progress` uses them: every event, live, in order."""
        bus = RedisBus(broker, prefix)
        await bus.start()
        outbox = Outbox()
        bus.subscribe(job_id, Follower(job_id, outbox, 0, history(store)))
        with ExitStack() as stack:
            for _ in range(2):
                stack.enter_context(worker(database, broker, prefix, data_dir))
            seen: list[int] = []
            while not seen or outbox_final(seen, store, job_id):
                event = await asyncio.wait_for(outbox.get(), 90)
                if not event.live:  # a job's metrics, live, repeat the last seq
                    seen.append(event.seq)
            for job in jobs:
                wait_final(store, job)
        await bus.stop()
        return seen

    heard = run_async(web_node_follows(jobs[-1]))
    finished = [wait_final(store, job) for job in jobs]
    assert heard == [e.seq for e in store.events_after(jobs[-1])]
    assert [job.status for job in finished] == [JobStatus.SUCCEEDED] * 4
    for job in finished:
        events = store.events_after(job.id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[-1].type == "complete" and (store.get_blob(job.id, "result") or b"").startswith(b"\x89PNG")
        assert {"queued", "progress"} <= {e.type for e in events}
    started = sorted(finished, key=lambda job: job.started_at)
    assert started[1].owner == "bob" or started[0].owner == "bob"  # bob's one job does not wait behind ann's three


def test_a_cancel_published_on_redis_stops_a_running_job(deployment: tuple) -> None:
    store, database, broker, prefix, data_dir = deployment
    queue = SharedQueue(store)
    job_id = admit(store, queue, data_dir, "cy", 30)
    with worker(database, broker, prefix, data_dir):
        deadline = time.monotonic() + 60
        while store.get(job_id).status != JobStatus.RUNNING or store.get(job_id).progress < 2:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        client = redis.Redis.from_url(broker)
        asked = time.monotonic()
        request_cancel(client, job_id, prefix)
        job = wait_final(store, job_id, timeout=20)
        took = time.monotonic() - asked
        client.close()
    assert job.status == JobStatus.CANCELLED and took < 5
    assert store.events_after(job_id)[-1].type == "cancelled"


def test_a_job_whose_worker_node_is_killed_runs_again_on_another(deployment: tuple) -> None:
    store, database, broker, prefix, data_dir = deployment
    queue = SharedQueue(store)
    job_id = admit(store, queue, data_dir, "dee", 4)
    with worker(database, broker, prefix, data_dir, lease_s=2) as first:
        deadline = time.monotonic() + 60
        while store.get(job_id).status != JobStatus.RUNNING:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        with worker(database, broker, prefix, data_dir, lease_s=2):
            first.kill()  # no goodbye: its lease goes stale and the other node takes the job back
            job = wait_final(store, job_id, timeout=60)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    events = store.events_after(job_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.progress for e in events] == sorted(e.progress for e in events)  # a re-run never moves the bar back
    assert sum(1 for e in events if e.type == "queued") >= 2  # queued again, with its place


def test_a_crashing_worker_on_a_worker_node_fails_its_job_at_once_and_the_next_job_runs(deployment: tuple) -> None:
    """The node's pool notices the dead process (as embedded: tests/jobs/test_processes.py); the node must record
    the crash in the shared store, release the job's lease and go on with the queue."""
    store, database, broker, prefix, data_dir = deployment
    queue = SharedQueue(store)
    crash = admit(store, queue, data_dir, "eve", 0, workflow=crash_workflow())
    after = admit(store, queue, data_dir, "eve", 0.1)
    with worker(database, broker, prefix, data_dir):
        deadline = time.monotonic() + 60
        while (job := store.get(crash)).status == JobStatus.QUEUED:
            assert time.monotonic() < deadline, "the crash job never started"
            time.sleep(0.05)
        began = time.monotonic()
        while not (job := store.get(crash)).status.is_final:
            assert time.monotonic() - began < 5, f"the crash was not recorded 5 s after the job started ({job.status})"
            time.sleep(0.05)
        final = store.events_after(crash)[-1]
        assert job.status == JobStatus.FAILED and (final.type, final.code) == ("error", "worker_crashed")
        assert wait_final(store, after, timeout=60).status == JobStatus.SUCCEEDED
    events = store.events_after(crash)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    with store.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(LeaseRow)) == 0, "a finished job is still leased"


def test_a_colorize_jobs_colour_query_maps_reach_the_store_beside_its_result(
    deployment: tuple, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oldphoto.jobs import querymaps

    store, database, broker, prefix, data_dir = deployment
    for name, value in {"MODEL": str(tiny_checkpoint), "MODELS_DIR": str(data_dir / "models"), "INPUT_SIZE": "64", "RUNTIME": "torch"}.items():
        monkeypatch.setenv(f"OLDPHOTO_{name}", value)
    job_id = admit(store, SharedQueue(store), data_dir, "ann", 0, workflow='{"steps": "colorize"}')
    with worker(database, broker, prefix, data_dir):
        job = wait_final(store, job_id, timeout=180)
    assert job.status == JobStatus.SUCCEEDED
    packed = store.get_blob(job_id, querymaps.KIND)
    assert packed is not None and store.get_blob(job_id, "result") is not None
    kept = data_dir / "from-store.zip"
    kept.write_bytes(packed)
    index = querymaps.read_index(kept)
    assert index is not None and len(index["queries"]) == 6
    assert list((data_dir / "results").glob("*")) == []  # the worker node keeps no copy of either


def test_a_worker_node_serves_the_metrics_of_the_jobs_it_ran(deployment: tuple) -> None:
    """In scale-out the node that runs a job records its stages, queue wait and end: scraped from the node itself."""
    store, database, broker, prefix, data_dir = deployment
    port = free_port()
    job = admit(store, SharedQueue(store), data_dir, "ann", 0.4)
    with worker(database, broker, prefix, data_dir, extra={"OLDPHOTO_WORKER_METRICS_PORT": str(port)}):
        assert wait_final(store, job).status == JobStatus.SUCCEEDED
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'oldphoto_jobs_finished_total{status="succeeded"} 1.0' in text
    assert "oldphoto_queue_wait_seconds_count 1.0" in text
    assert 'oldphoto_stage_duration_seconds_count{node_type="Pause",stage="inference+save"} 1.0' in text
    assert "oldphoto_workers_alive 1.0" in text and "oldphoto_jobs_running 0.0" in text


def test_a_worker_nodes_previews_reach_the_store_and_the_log(deployment: tuple) -> None:
    """Scale-out: the worker node keeps the latest picture as the job's store blob, where every web node reads it
    (`GET /api/jobs/{id}/preview`), and records the `preview` event that names it."""
    from oldphoto.jobs import previews

    store, database, broker, prefix, data_dir = deployment
    job_id = admit(store, SharedQueue(store), data_dir, "ann", 0, workflow='{"steps": "denoise"}')
    with worker(database, broker, prefix, data_dir):
        assert wait_final(store, job_id).status == JobStatus.SUCCEEDED
    named = [e.preview for e in store.events_after(job_id) if e.type == "preview"]
    assert named and named[-1] is not None and named[-1].url == previews.url(job_id, named[-1].frame)
    picture = previews.latest(store, job_id)
    assert picture is not None and picture[:3] == b"\xff\xd8\xff"  # a JPEG


def test_a_sigterm_drains_the_node_running_jobs_finish_and_no_new_one_starts(deployment: tuple) -> None:
    store, database, broker, prefix, data_dir = deployment
    queue = SharedQueue(store)
    running = admit(store, queue, data_dir, "ann", 2.0)
    with worker(database, broker, prefix, data_dir, extra={"OLDPHOTO_DRAIN_GRACE_S": "30"}) as process:
        wait_status(store, running, JobStatus.RUNNING)
        waiting = admit(store, queue, data_dir, "bob", 0.1)  # admitted now: the draining node must leave it
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert store.get(running).status == JobStatus.SUCCEEDED  # type: ignore[union-attr]  # it finished, not cut short
    left = store.get(waiting)
    assert left is not None and left.status == JobStatus.QUEUED and left.attempts == 0


@pytest.mark.parametrize("second_signal", [True, False], ids=["second-sigterm", "grace-spent"])
def test_a_job_still_running_when_the_drain_ends_is_handed_back_at_once(deployment: tuple, second_signal: bool) -> None:
    """Not after its lease (30 s here): at once, without spending its one retry, for another node to take."""
    store, database, broker, prefix, data_dir = deployment
    job_id = admit(store, SharedQueue(store), data_dir, "ann", 30.0)
    grace = "60" if second_signal else "1"
    with worker(database, broker, prefix, data_dir, extra={"OLDPHOTO_DRAIN_GRACE_S": grace}) as process:
        wait_status(store, job_id, JobStatus.RUNNING)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        if second_signal:
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        took = time.monotonic() - began
    job = store.get(job_id)
    assert job is not None and job.status == JobStatus.QUEUED and job.attempts == 0
    assert took < 10, f"the node took {took:.1f} s to stop"
