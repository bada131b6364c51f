"""Worker memory: what a job takes is given back when it ends, and a worker that still holds more than the pool's
ceiling after a job is replaced by a fresh one between jobs, with no job lost or failed for it.

Real worker processes (spawned, as the service runs them), real nets; RSS read from outside with psutil."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from oldphoto.engine import RunOptions
from oldphoto.imaging import save_png
from oldphoto.jobs.messages import Crashed, Done, Failed, Measured, Noted, Previewed, Ready, TimedOut, WorkerMessage
from oldphoto.jobs.workers import Worker
from tests.helpers.pools import Pool, start
from tests.helpers.server import running_server
from tests.jobs.conftest import TEST_ENV, pause_workflow
from tests.server.conftest import Client, png_bytes, recorded

pytestmark = pytest.mark.slow

MB = 2**20
UPSCALE_MODEL = "realesr-animevideov3-x4"


def upscale_workflow(tile: int) -> str:
    return json.dumps(
        {
            "1": {"class_type": "LoadImage", "inputs": {}},
            "2": {"class_type": "Upscale", "inputs": {"image": ["1", 0], "model": UPSCALE_MODEL, "tile": tile}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        }
    )


def noise_photo(path: Path, side: int) -> Path:
    save_png(path, np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8), None)
    return path


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def reset_peak(pid: int) -> None:
    """Reset the kernel's high-water mark of the process's resident memory (VmHWM) to its current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None
    return int(found.group(1)) * 1024


def settled_rss(pid: int, within_s: float = 10.0) -> int:
    """The process's RSS once it has stopped changing (it gives back after a job's outcome, not before)."""
    deadline = time.monotonic() + within_s
    last = rss(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss(pid)
        if abs(now - last) < MB:
            return now
        last = now
    return last


def outcomes(messages: list[WorkerMessage]) -> list[WorkerMessage]:
    """What ended a job: not its progress notes, preview pictures or metrics."""
    return [m for m in messages if not isinstance(m, Noted | Previewed | Measured)]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads the peak from Linux's /proc")
def test_a_4x_upscale_gives_its_memory_back_when_it_ends(pools: list[Pool], tmp_path: Path) -> None:
    """One 384-px tile of a 4x net takes some 400 MB; an idle worker holds it no longer once the job has ended.

    (ncnn's own pools kept it for as long as the net was loaded: 2.4 GB after a 1024-px tile.)"""
    pool = start(pools, tmp_path)  # no ceiling: the same worker throughout
    assert pool.next() == Ready()
    pid = pool.pool.workers[0].process.pid
    options = RunOptions(threads=1)
    photo = noise_photo(tmp_path / "photo-384.png", 384)
    # The same photo in small tiles first: it loads the net and touches all a job does but the large tile's memory,
    # so what stays after it is the baseline.
    pool.submit("warm", upscale_workflow(128), options, photo)
    assert pool.until(Done, timeout=120)[1] == Done("warm")
    baseline = settled_rss(pid)

    reset_peak(pid)
    pool.submit("large", upscale_workflow(384), options, photo)
    before, done = pool.until(Done, timeout=120)
    assert done == Done("large") and outcomes(before) == []
    took = peak(pid) - baseline
    held = settled_rss(pid) - baseline
    print(f"\nworker RSS: baseline {baseline / MB:.0f} MB, peak +{took / MB:.0f} MB, after the job +{held / MB:.0f} MB")
    assert took > 250 * MB, "the job did not need the memory this test is about"
    assert held < 32 * MB
    assert pool.pool.workers[0].process.pid == pid and pool.pool.recycled == 0


def test_a_worker_above_its_ceiling_is_recycled_between_jobs_and_the_next_job_succeeds(pools: list[Pool], tmp_path: Path) -> None:
    pool = start(pools, tmp_path, max_rss_mb=1)  # every worker holds more than 1 MB
    assert pool.next() == Ready()
    first = pool.pool.workers[0].process

    pool.submit("one", pause_workflow(0.1))
    before, done = pool.until(Done)
    assert done == Done("one") and outcomes(before) == []
    # Then, without a job to carry, the old worker is told to stop and a fresh one says it is ready.
    between, ready = pool.until(Ready, timeout=60)
    assert ready == Ready() and between == []
    second = pool.pool.workers[0].process
    assert second.pid != first.pid and pool.pool.recycled == 1
    first.join(10)
    assert first.exitcode == 0, "the old worker stopped on its own, between jobs, not killed or crashed"

    pool.submit("two", pause_workflow(0.1))
    before, done = pool.until(Done)
    assert done == Done("two") and outcomes(before) == []
    assert (tmp_path / "one.png").is_file() and (tmp_path / "two.png").is_file()


def test_a_job_given_to_a_worker_as_it_is_recycled_runs_on_its_successor(pools: list[Pool], tmp_path: Path) -> None:
    """An owner picks a worker (`idle`) as soon as a job ends, as the service does; the worker is recycled before the
    owner hands it the next job (`assign`): the fresh worker runs it, and it is neither lost nor failed."""
    pool = start(pools, tmp_path, max_rss_mb=1)
    chosen: list[tuple[Worker, int] | None] = []

    def on_message(message: WorkerMessage) -> None:
        # On the pool's thread, before it reads the worker's `Released`: the place is chosen before the recycle.
        if isinstance(message, Done) and not chosen:
            chosen.append(pool.pool.idle())
        pool.messages.put(message)

    pool.on_message = on_message  # type: ignore[method-assign]
    pool.pool.handler = on_message
    assert pool.next() == Ready()
    old = pool.pool.workers[0]
    pool.submit("one", pause_workflow(0.1))
    assert pool.until(Done)[1] == Done("one")
    place = chosen[0]
    assert place is not None and place[0] is old

    deadline = time.monotonic() + 30
    while pool.pool.recycled == 0:
        assert time.monotonic() < deadline, "the worker was not recycled"
        time.sleep(0.02)
    pool.pool.assign(place, pool.item("two", pause_workflow(0.1)))

    messages, done = pool.until(Done, timeout=60)
    assert done == Done("two")
    assert not [m for m in messages if isinstance(m, Crashed | Failed | TimedOut)]
    assert pool.pool.workers[0] is not old and pool.pool.workers[0].jobs == [None]


def test_a_worker_under_its_ceiling_is_kept(pools: list[Pool], tmp_path: Path) -> None:
    pool = start(pools, tmp_path, max_rss_mb=64 * 1024)
    assert pool.next() == Ready()
    pid = pool.pool.workers[0].process.pid
    for job in ("one", "two"):
        pool.submit(job, pause_workflow(0.1))
        assert pool.until(Done)[1] == Done(job)
    time.sleep(0.5)
    assert pool.pool.workers[0].process.pid == pid and pool.pool.recycled == 0 and pool.pool.idle() is not None


def test_the_service_recycles_workers_over_the_ceiling_and_loses_no_job(tmp_path: Path) -> None:
    """`OLDPHOTO_WORKER_MAX_RSS_MB` through a real server: three jobs queued at once, every worker over the ceiling
    after each job. A job handed to a worker just before it says how much it holds runs there first, so two or three
    workers are recycled; all three jobs succeed, each with its events in order and no error, and /metrics counts
    the recycled workers as the log tells them."""
    env = {**TEST_ENV, "OLDPHOTO_WORKER_MAX_RSS_MB": "1", "OLDPHOTO_USER_CONCURRENCY": "5"}
    with running_server(tmp_path, env) as server:
        client = Client(server)
        jobs = [client.submit(png_bytes(32, 32), workflow=pause_workflow(0.2))["job_id"] for _ in range(3)]
        for job in jobs:
            events = client.follow(job)
            assert events[-1]["type"] == "complete", events[-1]
            assert not [e for e in events if e["type"] == "error"]
            seqs = [e["seq"] for e in recorded(events)]
            assert seqs == list(range(1, len(seqs) + 1)), seqs
        deadline = time.monotonic() + 30
        while (recycled := _metric(server.url, "oldphoto_workers_recycled_total")) != server.log().count("recycled: it held") or recycled < 2:
            assert time.monotonic() < deadline, f"{recycled} workers recycled; the log: {server.log()[-2000:]}"
            time.sleep(0.2)
        assert recycled in (2, 3)


def _metric(url: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", httpx.get(f"{url}/metrics").text, re.MULTILINE)
    assert found is not None, f"{name} is not in /metrics"
    return float(found.group(1))
