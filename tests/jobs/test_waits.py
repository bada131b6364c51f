"""A waiting job's expected wait: its place, the jobs ahead's expected seconds, the running jobs, the free slots."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from oldphoto.jobs import announcements
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.store import Job
from oldphoto.jobs.waits import Waits, expected_waits
from oldphoto.protocol import JobEvent, LivePlace

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def job(job_id: str, status: JobStatus, started_s_ago: float | None = None) -> Job:
    started = None if started_s_ago is None else NOW - timedelta(seconds=started_s_ago)
    return Job(job_id, "u", status, "queued", 0, "queued", {}, "{}", None, "x", None, None, None, 0, 2, NOW, started, None)


def test_with_two_jobs_ahead_and_one_slot_a_job_waits_for_both_and_the_running_one() -> None:
    waits, _ = expected_waits(["a", "b", "c"], {"a": 4.0, "b": 6.0, "c": 1.0}, running_left=[3.0], slots=1)
    assert waits == {"a": 3.0, "b": 7.0, "c": 13.0}


def test_free_slots_start_jobs_at_once_and_the_earliest_free_slot_takes_the_next() -> None:
    waits, after = expected_waits(["a", "b", "c"], {"a": 4.0, "b": 6.0, "c": 1.0}, running_left=[2.0], slots=3)
    assert waits == {"a": 0.0, "b": 0.0, "c": 2.0}
    assert after == [3.0, 4.0, 6.0]


def test_a_running_job_past_its_estimate_is_taken_to_end_now() -> None:
    waits, _ = expected_waits(["a"], {"a": 4.0}, running_left=[-5.0], slots=1)
    assert waits == {"a": 0.0}


def test_waits_come_from_each_jobs_expected_seconds_and_how_long_the_running_one_has_run() -> None:
    waits = Waits(lambda j: {"r": 10.0, "a": 4.0, "b": 6.0}[j.id])
    active = [job("r", JobStatus.RUNNING, started_s_ago=8.0), job("a", JobStatus.QUEUED), job("b", JobStatus.QUEUED)]
    assert waits.update({"a": 1, "b": 2}, active, slots=1, now=NOW) == {"a": 2.0, "b": 6.0}
    assert waits.of("b") == 6.0
    # A job entering behind both waits for both; one entering at place 1 for the running job only.
    assert waits.at_place(3, 3) == 12.0
    assert waits.at_place(1, 3) == 2.0


def test_no_worker_slot_means_no_wait_is_said() -> None:
    waits = Waits(lambda j: 1.0)
    assert waits.update({"a": 1}, [job("a", JobStatus.QUEUED)], slots=0, now=NOW) == {}
    assert waits.at_place(1, 1) is None


def test_a_live_place_with_its_wait_has_the_wire_shape_of_a_recorded_queued_event_plus_live() -> None:
    live = LivePlace("j", 2, 1234.5, seq=3, progress=0, wait_s=12.5)
    recorded = JobEvent.model_validate({**announcements.queued(2, 0, 12.5), "job_id": "j", "seq": 3, "ts": 1234.5})
    wire = json.loads(live.wire_text("en"))
    assert wire == {**recorded.to_wire("en"), "live": True}
    assert wire["wait_s"] == 12.5
