"""The Recorder turns each typed message about a running job into its recorded event, once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.messages import Cancelled, Done, Failed, JobMessage, Noted, TimedOut, exited, restarted_beside
from oldphoto.jobs.recorder import Recorder
from oldphoto.jobs.store import JobStore, NewJob
from oldphoto.protocol import JobEvent, Note


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
