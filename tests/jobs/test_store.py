"""The job store on both of its databases: a SQLite file (embedded mode) and PostgreSQL (scale-out mode)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from oldphoto.jobs.lifecycle import IllegalTransition, JobStatus
from oldphoto.jobs.store import JobStore, NewJob
from oldphoto.protocol import JobEvent
from tests.helpers.services import postgres_database

StoreFactory = Callable[[], JobStore]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.scaleout)])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens the test's store (again and again, as several processes would); each opening is closed afterwards."""
    opened: list[JobStore] = []

    def open_with(url: str) -> StoreFactory:
        def factory() -> JobStore:
            opened.append(JobStore(url))
            return opened[-1]

        return factory

    if request.param == "sqlite":
        yield open_with(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
        for store in opened:
            store.close()
        return
    with postgres_database() as url:
        yield open_with(url)
        for store in opened:
            store.close()  # before the database is dropped


def upload_event() -> JobEvent:
    return JobEvent(job_id="pending", seq=1, stage="upload", message_key="upload", progress=0)


def progress(stage: str, value: int) -> dict:
    return {"type": "progress", "stage": stage, "message_key": stage, "progress": value}


def test_events_get_consecutive_seqs_and_replay_after_any_point(new_store: StoreFactory) -> None:
    store = new_store()
    job = store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event())
    store.set_status(job.id, JobStatus.RUNNING)
    for value in (5, 10, 50):
        store.append(job.id, progress("inference", value))
    store.append(job.id, {"type": "complete", "stage": "complete", "message_key": "complete", "progress": 100}, JobStatus.SUCCEEDED)
    assert [e.seq for e in store.events_after(job.id)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in store.events_after(job.id, 3)] == [4, 5]
    finished = store.get(job.id)
    assert finished.status == JobStatus.SUCCEEDED and finished.progress == 100 and finished.finished_at is not None


def test_the_log_keeps_an_event_without_what_its_row_already_says(new_store: StoreFactory) -> None:
    """Job id, seq and default values stay out of the stored body (bytes per job), and every field comes back."""
    store = new_store()
    job = store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event())
    store.set_status(job.id, JobStatus.RUNNING)
    step = {**progress("inference", 40), "source": "colorize", "node": "n1", "message_key": "inference.block"}
    said = store.append(job.id, {**step, "message_params": {"index": 4, "total": 22}, "step_progress": 0.1818, "eta_s": 1.5})
    with store.engine.connect() as connection:
        body = connection.execute(text("SELECT body FROM events WHERE job_id = :j AND seq = 2"), {"j": job.id}).scalar_one()
    assert job.id not in body and '"seq"' not in body and '"type"' not in body
    (back,) = store.events_after(job.id, 1)
    assert back == said and back.job_id == job.id and back.seq == 2 and back.type == "progress"
    assert back.wire_text() == said.wire_text()


def test_bodies_written_with_their_job_and_seq_still_read(new_store: StoreFactory) -> None:
    """The log written before bodies left out their columns reads the same."""
    store = new_store()
    job = store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event())
    full = JobEvent(job_id=job.id, seq=1, stage="upload", message_key="upload", progress=0, ts=12.5)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE events SET body = :b WHERE job_id = :j"), {"b": full.model_dump_json(exclude_none=True), "j": job.id})
    assert store.events_after(job.id) == [full]


def test_the_store_survives_reopening(new_store: StoreFactory) -> None:
    store = new_store()
    job = store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event())
    store.append(job.id, progress("queued", 0))
    store.close()
    reopened = new_store()
    assert reopened.get(job.id).owner == "u"
    assert [e.seq for e in reopened.events_after(job.id)] == [1, 2]


def test_a_finished_job_cannot_change_state(new_store: StoreFactory) -> None:
    store = new_store()
    job = store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event())
    store.append(job.id, {"type": "cancelled", "stage": "queued", "message_key": "cancelled", "progress": 0}, JobStatus.CANCELLED)
    with pytest.raises(IllegalTransition):
        store.set_status(job.id, JobStatus.RUNNING)
    assert store.get(job.id).status == JobStatus.CANCELLED


def test_job_ids_are_random_and_long(new_store: StoreFactory) -> None:
    store = new_store()
    ids = {store.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event()).id for _ in range(50)}
    assert len(ids) == 50 and all(len(i) >= 22 for i in ids)


def test_writers_in_several_processes_never_share_a_seq(new_store: StoreFactory) -> None:
    """Workers and web nodes append to the same job at once (each with its own connection pool, as separate
    processes): every event gets its own seq, and the log has no gap."""
    first = new_store()
    job = first.create(NewJob(owner="u", workflow="{}", input_path="x"), upload_event())
    first.set_status(job.id, JobStatus.RUNNING)
    writers = [new_store() for _ in range(4)]
    errors: list[BaseException] = []

    def write(store: JobStore, writer: int) -> None:
        try:
            for i in range(25):
                store.append(job.id, {**progress("inference", 1), "message_params": {"writer": writer, "i": i}})
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(store, n)) for n, store in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    events = first.events_after(job.id)
    assert [e.seq for e in events] == list(range(1, 102))
    assert sorted((e.message_params["writer"], e.message_params["i"]) for e in events[1:]) == [(w, i) for w in range(4) for i in range(25)]
    assert first.get(job.id).last_seq == 101
