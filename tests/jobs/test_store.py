from __future__ import annotations

from pathlib import Path

import pytest

from oldphoto.jobs.lifecycle import IllegalTransition, JobStatus
from oldphoto.jobs.store import JobStore, NewJob
from oldphoto.protocol import JobEvent


def new_store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")


def upload_event() -> JobEvent:
    return JobEvent(job_id="pending", seq=1, stage="upload", message_key="upload", progress=0)


def progress(stage: str, value: int) -> dict:
    return {"type": "progress", "stage": stage, "message_key": stage, "progress": value}


def test_events_get_consecutive_seqs_and_replay_after_any_point(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    job = store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event())
    store.set_status(job.id, JobStatus.RUNNING)
    for value in (5, 10, 50):
        store.append(job.id, progress("inference", value))
    store.append(job.id, {"type": "complete", "stage": "complete", "message_key": "complete", "progress": 100}, JobStatus.SUCCEEDED)
    assert [e.seq for e in store.events_after(job.id)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in store.events_after(job.id, 3)] == [4, 5]
    finished = store.get(job.id)
    assert finished.status == JobStatus.SUCCEEDED and finished.progress == 100 and finished.finished_at is not None


def test_the_store_survives_reopening(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    job = store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event())
    store.append(job.id, progress("queued", 0))
    store.close()
    reopened = new_store(tmp_path)
    assert reopened.get(job.id).owner == "u"
    assert [e.seq for e in reopened.events_after(job.id)] == [1, 2]


def test_a_finished_job_cannot_change_state(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    job = store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event())
    store.append(job.id, {"type": "cancelled", "stage": "queued", "message_key": "cancelled", "progress": 0}, JobStatus.CANCELLED)
    with pytest.raises(IllegalTransition):
        store.set_status(job.id, JobStatus.RUNNING)
    assert store.get(job.id).status == JobStatus.CANCELLED


def test_job_ids_are_random_and_long(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    ids = {store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event()).id for _ in range(50)}
    assert len(ids) == 50 and all(len(i) >= 22 for i in ids)
