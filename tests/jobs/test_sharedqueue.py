"""The shared fair queue (scale-out mode) hands out jobs in exactly the order of the in-memory FairQueue, on SQLite
and on PostgreSQL, and starting a job takes it out of the queue and marks it running in one step."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.scheduler import FairQueue
from oldphoto.jobs.sharedqueue import SharedQueue
from oldphoto.jobs.store import EventRow, JobRow, JobStore, LaneRow, NewJob, QueueEntryRow
from oldphoto.protocol import JobEvent
from tests.helpers.services import postgres_database

OWNERS = ["ann", "bob", "cy"]
Operation = tuple[str, int]  # ("push", owner index) | ("pop", 0) | ("remove", job index)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.scaleout)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
        yield store
        store.close()
        return
    with postgres_database() as url:
        store = JobStore(url)
        yield store
        store.close()


def new_job(store: JobStore, owner: str) -> str:
    first = JobEvent(job_id="pending", seq=1, stage="upload", message_key="upload", progress=0)
    return store.create(NewJob(owner=owner, workflow="{}", input_path="x"), first).id


def empty(store: JobStore) -> None:
    with store.engine.begin() as connection:
        for table in (QueueEntryRow, LaneRow, EventRow, JobRow):
            connection.execute(delete(table))


operations = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, len(OWNERS) - 1)),
        st.tuples(st.just("pop"), st.just(0)),
        st.tuples(st.just("remove"), st.integers(0, 30)),
    ),
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_the_same_order_and_places_as_the_in_memory_fair_queue(store: JobStore, steps: list[Operation]) -> None:
    empty(store)
    shared, reference = SharedQueue(store), FairQueue()
    pushed: list[str] = []
    for kind, argument in steps:
        if kind == "push":
            owner = OWNERS[argument]
            job = new_job(store, owner)
            pushed.append(job)
            shared.push(job, owner)
            reference.push(job, owner)
        elif kind == "pop":
            assert shared.pop() == reference.pop()
        elif pushed:
            job = pushed[argument % len(pushed)]
            assert shared.remove(job) == reference.remove(job)
        assert shared.positions() == reference.positions()
        assert len(shared) == len(reference)


def test_starting_the_next_job_marks_it_running_and_users_take_turns(store: JobStore) -> None:
    queue = SharedQueue(store)
    jobs = {name: new_job(store, name[0]) for name in ("a0", "a1", "a2", "b0")}
    for name in ("a0", "a1", "a2", "b0"):
        queue.push(jobs[name], name[0])
    assert queue.positions() == {jobs["a0"]: 1, jobs["b0"]: 2, jobs["a1"]: 3, jobs["a2"]: 4}
    started = queue.start_next()
    assert started == jobs["a0"] and store.get(started).status == JobStatus.RUNNING
    assert queue.start_next() == jobs["b0"]
    assert jobs["a1"] in queue and jobs["a0"] not in queue
    assert queue.positions() == {jobs["a1"]: 1, jobs["a2"]: 2}


@pytest.mark.scaleout
def test_workers_on_several_connections_never_start_the_same_job() -> None:
    with postgres_database() as url:
        admin = JobStore(url)
        queue = SharedQueue(admin)
        jobs = [new_job(admin, OWNERS[i % 3]) for i in range(40)]
        for i, job in enumerate(jobs):
            queue.push(job, OWNERS[i % 3])
        workers = [JobStore(url) for _ in range(4)]
        started: list[str] = []
        lock = threading.Lock()

        def work(store: JobStore) -> None:
            mine = SharedQueue(store)
            while (job := mine.start_next()) is not None:
                with lock:
                    started.append(job)

        threads = [threading.Thread(target=work, args=(store,)) for store in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(started) == sorted(jobs) and len(set(started)) == 40
        assert all(admin.get(job).status == JobStatus.RUNNING for job in jobs)
        for store in (*workers, admin):
            store.close()


def test_every_change_of_place_is_recorded_and_published_after_the_commit(store: JobStore) -> None:
    published: list[JobEvent] = []
    queue = SharedQueue(store, publish=published.append)
    a0, a1, b0 = new_job(store, "a"), new_job(store, "a"), new_job(store, "b")
    for job, owner in ((a0, "a"), (a1, "a"), (b0, "b")):
        queue.push(job, owner)
    # b0 arriving moves a1 from 2 to 3: a1 hears 2, then 3
    assert [(e.job_id, e.position) for e in published] == [(a0, 1), (a1, 2), (b0, 2), (a1, 3)]
    published.clear()
    assert queue.start_next() == a0
    assert sorted((e.job_id, e.position) for e in published) == sorted([(b0, 1), (a1, 2)])
    published.clear()
    assert queue.remove(b0)
    assert [(e.job_id, e.position) for e in published] == [(a1, 1)]
    logged = [e for e in store.events_after(a1) if e.type == "queued"]
    assert [e.position for e in logged] == [2, 3, 2, 1] and [e.seq for e in logged] == [2, 3, 4, 5]
