"""A running job's previews: each picture is kept (the latest only) before the event that names it is recorded; the
events are ordinary recorded events (seq without gaps, replayed); the picture goes with the job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oldphoto.jobs import previews
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.messages import Done, Noted, Previewed
from oldphoto.jobs.recorder import Recorder
from oldphoto.jobs.store import JobStore, NewJob, stored_body
from oldphoto.protocol import JobEvent, Note, PreviewImage


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    yield store
    store.close()


@pytest.fixture
def published() -> list[JobEvent]:
    return []


@pytest.fixture
def recorder(store: JobStore, published: list[JobEvent], tmp_path: Path) -> Recorder:
    return Recorder(store, published.append, tmp_path, job_timeout_s=60)


def running_job(store: JobStore, recorder: Recorder, floor: int = 0) -> str:
    first = JobEvent(job_id="pending", seq=1, stage="upload", message_key="upload", progress=0)
    job = store.create(NewJob(owner="alice", workflow="{}", input_path="/nowhere"), first)
    store.set_status(job.id, JobStatus.RUNNING)
    recorder.started(job.id, floor)
    return job.id


def preview(job_id: str, frame: int, progress: int = 40, image: bytes = b"") -> Previewed:
    note = Note(
        type="preview",
        stage="inference",
        source="upscale",
        node="up",
        message_key="upscale.inference",
        progress=progress,
        preview=PreviewImage(width=256, height=171, frame=frame),
    )
    return Previewed(job_id, note, image or f"jpeg {frame}".encode())


def test_the_picture_is_kept_and_the_event_names_it(store: JobStore, recorder: Recorder, published: list[JobEvent]) -> None:
    job_id = running_job(store, recorder)
    assert recorder.on_message(preview(job_id, 1)) is False  # the job goes on
    (event,) = published
    assert event.type == "preview" and event.seq == 2
    assert event.preview is not None and event.preview.url == f"/api/jobs/{job_id}/preview?v=1"
    assert previews.latest(store, job_id) == b"jpeg 1"
    wire = event.to_wire()
    assert wire["preview"] == {"url": event.preview.url, "width": 256, "height": 171, "media_type": "image/jpeg", "frame": 1}


def test_previews_are_recorded_events_between_the_others(store: JobStore, recorder: Recorder, published: list[JobEvent]) -> None:
    job_id = running_job(store, recorder)
    recorder.on_message(Noted(job_id, Note(stage="inference", message_key="upscale.tile", progress=30)))
    recorder.on_message(preview(job_id, 1))
    recorder.on_message(Noted(job_id, Note(stage="inference", message_key="upscale.tile", progress=50)))
    recorder.on_message(preview(job_id, 2))
    replayed = store.events_after(job_id, 0)
    assert [e.seq for e in replayed] == [1, 2, 3, 4, 5]
    assert [e.type for e in replayed] == ["progress", "progress", "preview", "progress", "preview"]
    assert replayed[1:] == published
    assert previews.latest(store, job_id) == b"jpeg 2", "a job keeps its latest picture only"


def test_a_preview_moves_neither_the_bar_nor_the_sentence(store: JobStore, recorder: Recorder, published: list[JobEvent]) -> None:
    job_id = running_job(store, recorder, floor=60)  # a re-run job that had got to 60%
    recorder.on_message(preview(job_id, 1, progress=20))
    assert published[0].progress == 60
    job = store.get(job_id)
    assert job is not None and job.message_key == "upscale.inference" and job.progress == 60


def test_the_log_keeps_the_name_not_the_picture(store: JobStore, recorder: Recorder, published: list[JobEvent]) -> None:
    job_id = running_job(store, recorder)
    recorder.on_message(preview(job_id, 7, image=b"\xff" * 20_000))
    body = stored_body(published[0])
    assert len(body) < 300, body


def test_after_its_end_a_job_hears_no_more_previews(store: JobStore, recorder: Recorder, published: list[JobEvent]) -> None:
    job_id = running_job(store, recorder)
    recorder.on_message(Done(job_id))
    assert recorder.on_message(preview(job_id, 1)) is False
    assert [e.type for e in published] == ["complete"]
    assert previews.latest(store, job_id) is None


def test_the_picture_goes_with_the_job(store: JobStore, recorder: Recorder) -> None:
    job_id = running_job(store, recorder)
    recorder.on_message(preview(job_id, 1))
    store.delete(job_id)
    assert previews.latest(store, job_id) is None
