"""The Recorder turns each typed message about a running job into its recorded event, once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oldphoto.jobs import announcements
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.messages import Cancelled, Done, Failed, JobMessage, Measured, Noted, TimedOut, exited, restarted_beside
from oldphoto.jobs.recorder import Recorder
from oldphoto.jobs.store import JobStore, NewJob
from oldphoto.protocol import JobEvent, LiveMetrics, Note, Speed, Usage


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    yield store
    store.close()


def running_job(store: JobStore, recorder: Recorder) -> str:
    first = JobEvent(job_id="pending", seq=1, stage="upload", message_key="upload", progress=0)
    job = store.create(NewJob(owner="alice", workflow="{}", input_path="/nowhere"), first)
    store.set_status(job.id, JobStatus.RUNNING)
    recorder.started(job.id, 0)
    return job.id


@pytest.mark.parametrize(
    ("outcome", "status", "event_type", "code"),
    [
        (Done, JobStatus.SUCCEEDED, "complete", None),
        (Cancelled, JobStatus.CANCELLED, "cancelled", None),
        (lambda job: Failed(job, "invalid_image", "Not a photo."), JobStatus.FAILED, "error", "invalid_image"),
        (lambda job: exited(job, -9), JobStatus.FAILED, "error", "worker_crashed"),
        (restarted_beside, JobStatus.FAILED, "error", "worker_restarted"),
        (TimedOut, JobStatus.FAILED, "error", "timeout"),
    ],
)
def test_each_outcome_ends_the_job_once(
    store: JobStore, tmp_path: Path, outcome: Callable[[str], JobMessage], status: JobStatus, event_type: str, code: str | None
) -> None:
    published: list[JobEvent] = []
    recorder = Recorder(store, published.append, tmp_path, job_timeout_s=7)
    job_id = running_job(store, recorder)
    message = outcome(job_id)
    assert recorder.on_message(message) is True
    assert recorder.on_message(message) is False  # a second word about an ended job is dropped
    job = store.get(job_id)
    assert job is not None and job.status == status and job.code == code
    assert [e.type for e in published] == [event_type] and published[0].code == code


def test_a_job_beside_a_timeout_is_told_so_in_words_of_its_own(store: JobStore, tmp_path: Path) -> None:
    published: list[JobEvent] = []
    recorder = Recorder(store, published.append, tmp_path, job_timeout_s=7)
    job_id = running_job(store, recorder)
    recorder.on_message(restarted_beside(job_id))
    assert published[0].error == "Another job in the same worker ran out of time and the worker was restarted; please try again."


def test_a_note_is_recorded_and_the_job_goes_on(store: JobStore, tmp_path: Path) -> None:
    published: list[JobEvent] = []
    recorder = Recorder(store, published.append, tmp_path, job_timeout_s=7)
    job_id = running_job(store, recorder)
    assert recorder.on_message(Noted(job_id, Note(stage="inference", message_key="inference", progress=30))) is False
    assert [(e.stage, e.progress) for e in published] == [("inference", 30)]
    assert job_id in recorder.running


def test_a_rerun_jobs_notes_never_fall_below_where_it_had_got_and_the_floor_goes_with_the_job(store: JobStore, tmp_path: Path) -> None:
    published: list[JobEvent] = []
    recorder = Recorder(store, published.append, tmp_path, job_timeout_s=7)
    job_id = running_job(store, recorder)
    recorder.running.discard(job_id)
    recorder.floors.clear()
    recorder.started(job_id, 40)  # handed out again after getting to 40 %
    recorder.started(job_id, 5)  # a second start does not lower the floor
    recorder.on_message(Noted(job_id, Note(stage="inference", message_key="inference", progress=10)))
    recorder.on_message(Noted(job_id, Note(stage="inference", message_key="inference", progress=70)))
    assert [(e.stage, e.message_key, e.progress) for e in published] == [("inference", "inference", 40), ("inference", "inference", 70)]
    assert [(e.stage, e.progress) for e in store.events_after(job_id, 1)] == [("inference", 40), ("inference", 70)]
    recorder.on_message(Done(job_id))
    assert recorder.floors == {} and recorder.running == set()


def test_an_outcome_records_where_the_job_was_and_what_went_wrong(store: JobStore, tmp_path: Path) -> None:
    for outcome, error, progress in [
        (Cancelled, None, 30),  # a cancel keeps the bar where it was; an error event says 0
        (lambda job: Failed(job, "invalid_image", "Not a photo."), "Not a photo.", 0),
        (TimedOut, "The job took longer than the limit of 7.5 seconds.", 0),
    ]:
        published: list[JobEvent] = []
        recorder = Recorder(store, published.append, tmp_path, job_timeout_s=7.5)
        job_id = running_job(store, recorder)
        recorder.on_message(Noted(job_id, Note(stage="inference", message_key="inference", progress=30)))
        assert recorder.on_message(outcome(job_id)) is True
        final = published[-1]
        assert (final.stage, final.progress, final.error) == ("inference", progress, error)
        job = store.get(job_id)
        assert job is not None and job.error == error and job.stage == "inference"


def test_a_done_job_points_at_its_result_and_words_about_other_jobs_are_dropped(store: JobStore, tmp_path: Path) -> None:
    published: list[JobEvent] = []
    recorder = Recorder(store, published.append, tmp_path, job_timeout_s=7)
    job_id = running_job(store, recorder)
    assert recorder.on_message(Noted("someone-else", Note(stage="inference", message_key="inference", progress=30))) is False
    assert recorder.on_message(Done("someone-else")) is False and published == []
    assert recorder.on_message(Done(job_id)) is True
    job = store.get(job_id)
    assert job is not None and job.result_path == str(tmp_path / f"{job_id}.png")
    assert published[-1].result_url == announcements.result_url(job_id) and job_id in published[-1].result_url


def test_an_outcome_for_a_job_no_longer_running_ends_its_run_but_records_nothing(store: JobStore, tmp_path: Path) -> None:
    published: list[JobEvent] = []
    recorder = Recorder(store, published.append, tmp_path, job_timeout_s=7)
    job_id = running_job(store, recorder)
    store.set_status(job_id, JobStatus.CANCELLED)  # cancelled while it ran: the cancel was recorded elsewhere
    assert recorder.on_message(Done(job_id)) is True
    assert published == [] and job_id not in recorder.running and recorder.floors == {}
    job = store.get(job_id)
    assert job is not None and job.status == JobStatus.CANCELLED


def test_failing_a_job_the_store_no_longer_has_records_nothing(store: JobStore, tmp_path: Path) -> None:
    """Why `fail`'s fallback stage for a missing job never reaches anyone (its mutants are judged equivalent)."""
    published: list[JobEvent] = []
    with pytest.raises(Exception):  # noqa: B017 - whichever the store raises, nothing is recorded or published
        Recorder(store, published.append, tmp_path, job_timeout_s=7).fail("no-such-job", "timeout", "late")
    assert published == [] and store.get("no-such-job") is None


def test_metrics_are_told_live_never_recorded_and_the_last_ones_sum_up_the_run(store: JobStore, tmp_path: Path) -> None:
    published: list[JobEvent] = []
    told: list[LiveMetrics] = []
    recorder = Recorder(store, published.append, tmp_path, job_timeout_s=7, tell=told.append)
    job_id = running_job(store, recorder)
    for stage in ("preprocess", "inference"):
        recorder.on_message(Noted(job_id, Note(stage=stage, node="1", source="colorize", message_key=stage, progress=10)))
    live = Usage(elapsed_s=1.0, rss_bytes=300 * 2**20, peak_rss_bytes=400 * 2**20)
    assert recorder.on_message(Measured(job_id, live)) is False
    speeds = (Speed(node="1", unit="block", done=22, total=22, seconds=2.0, per_s=11.0),)
    last = Usage(elapsed_s=2.5, rss_bytes=310 * 2**20, peak_rss_bytes=512 * 2**20, peak_cuda_bytes=2**30)
    recorder.on_message(Measured(job_id, last, speeds))
    assert [(t.job_id, t.usage) for t in told] == [(job_id, live), (job_id, last)]
    assert [e.type for e in published] == ["progress", "progress"]  # nothing of the metrics in the log

    recorder.on_message(Done(job_id))
    complete = published[-1]
    assert complete.type == "complete" and complete.metrics is not None
    summary = complete.metrics
    assert (summary.elapsed_s, summary.peak_rss_bytes, summary.peak_cuda_bytes) == (2.5, 512 * 2**20, 2**30)
    assert summary.speeds == list(speeds)
    assert [(s.node, s.stage) for s in summary.stages] == [("1", "preprocess"), ("1", "inference")]  # the last one up to the end
    assert store.get(job_id).metrics == summary.model_dump(exclude_none=True)  # type: ignore[union-attr]
    assert [e.metrics for e in store.events_after(job_id) if e.type == "complete"] == [summary]  # replayed with the log
    assert job_id not in recorder.measured


def test_a_failed_job_is_summed_up_too_and_one_that_said_nothing_is_not(store: JobStore, tmp_path: Path) -> None:
    published: list[JobEvent] = []
    recorder = Recorder(store, published.append, tmp_path, job_timeout_s=7)
    measured = running_job(store, recorder)
    recorder.on_message(Measured(measured, Usage(elapsed_s=0.5, rss_bytes=1, peak_rss_bytes=2)))
    recorder.on_message(Failed(measured, "out_of_memory", "The machine ran out of memory on this photo."))
    silent = running_job(store, recorder)
    recorder.on_message(exited(silent, -9))
    assert [(e.type, e.metrics is not None) for e in published] == [("error", True), ("error", False)]
    assert published[0].metrics.peak_rss_bytes == 2 and store.get(silent).metrics is None  # type: ignore[union-attr]
