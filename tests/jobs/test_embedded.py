"""The embedded queue: admission records the job, its first events and its place in one step, within the limits; a
move of the queue records nothing for the jobs that wait."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from oldphoto.jobs.admission import AdmissionRules
from oldphoto.jobs.embedded import LocalQueue
from oldphoto.jobs.errors import QueueFull, ShareLimit, UserLimit
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.store import EventRow, JobStore, NewJob


@pytest.fixture
def queue(tmp_path: Path) -> LocalQueue:
    return LocalQueue(JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}"))


def admit(queue: LocalQueue, owner: str, rules: AdmissionRules | None = None) -> tuple[str, int]:
    job, events, position = queue.admit(NewJob(owner=owner, workflow="{}", input_path="x"), rules or AdmissionRules(), None)
    assert [(e.seq, e.type) for e in events] == [(1, "progress"), (2, "queued")] and events[1].position == position
    return job.id, position


def rows(queue: LocalQueue) -> int:
    with queue.store.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(EventRow)) or 0


def test_a_move_of_a_long_queue_records_only_the_moved_jobs_own_event(queue: LocalQueue) -> None:
    admitted = [admit(queue, f"user-{i}") for i in range(200)]
    assert [position for _, position in admitted] == list(range(1, 201))
    before = rows(queue)
    started = queue.start_next()
    assert started is not None and started.id == admitted[0][0]
    assert queue.store.get(started.id).status == JobStatus.RUNNING
    cancelled = queue.withdraw(admitted[1][0], {"type": "cancelled", "stage": "queued", "message_key": "cancelled", "progress": 0})
    assert cancelled is not None and cancelled.seq == 3
    assert rows(queue) == before + 1  # 198 jobs moved up two places, in silence
    assert queue.positions()[admitted[2][0]] == 1


def test_admission_applies_the_limits_and_a_refused_job_leaves_nothing(queue: LocalQueue) -> None:
    admit(queue, "ann", AdmissionRules(user_concurrency=1))
    with pytest.raises(UserLimit):
        admit(queue, "ann", AdmissionRules(user_concurrency=1))
    with pytest.raises(QueueFull):
        admit(queue, "bob", AdmissionRules(queue_max=1))
    assert len(queue) == 1 and queue.store.count_active() == 1


def test_a_job_that_had_started_hears_its_place_when_put_back(queue: LocalQueue) -> None:
    job_id, _ = admit(queue, "ann")
    admit(queue, "bob")
    job = queue.start_next()
    assert job is not None
    queue.store.append(job_id, {"type": "progress", "stage": "inference", "message_key": "inference", "progress": 40})
    queue.store.set_status(job_id, JobStatus.QUEUED)
    told = queue.put_back(queue.store.get(job_id))
    assert told is not None and told.type == "queued" and told.position == 2 and told.progress == 40


def test_a_batch_of_admissions_applies_the_rules_in_order_counting_the_batch(queue: LocalQueue) -> None:
    batch = [(NewJob(owner=owner, workflow="{}", input_path="x"), None) for owner in ("a", "a", "b", "a", "c")]
    answers = queue.admit_many(batch, AdmissionRules(user_concurrency=2, queue_max=3))
    places = [a if isinstance(a, BaseException) else a[2] for a in answers]
    assert places[:3] == [1, 3, 2]  # each once the batch is in: b's first goes before a's second
    assert isinstance(places[3], UserLimit) and isinstance(places[4], QueueFull)
    assert all(queue.store.get(new.id) is None for new, _ in batch[3:])
    assert len(queue) == 3 and rows(queue) == 6  # two events for each admitted job, none for the refused
    a1, a2, b1 = (answer[0].id for answer in answers[:3])  # type: ignore[index]
    assert queue.positions() == {a1: 1, b1: 2, a2: 3}


def test_a_batch_whose_transaction_fails_leaves_no_job_waiting(queue: LocalQueue) -> None:
    taken = NewJob(owner="a", workflow="{}", input_path="x")
    admit_new = queue.admit(taken, AdmissionRules(), None)
    assert admit_new[2] == 1
    unwritable = NewJob(owner="b", workflow=None, input_path="x")  # type: ignore[arg-type]  # a row the store refuses
    with pytest.raises(IntegrityError):
        queue.admit_many([(NewJob(owner="c", workflow="{}", input_path="x"), None), (unwritable, None)], AdmissionRules())
    assert len(queue) == 1 and queue.positions() == {taken.id: 1}


def test_jobs_of_one_share_take_one_lane_and_one_users_room(queue: LocalQueue) -> None:
    crowd = [(NewJob(owner=f"anon-{i}", workflow="{}", input_path="x", share="address:a"), None) for i in range(4)]
    answers = queue.admit_many([*crowd, (NewJob(owner="anon-x", workflow="{}", input_path="x", share="address:b"), None)], AdmissionRules(user_concurrency=3))
    assert isinstance(answers[3], ShareLimit)
    assert [a[2] for a in answers if not isinstance(a, BaseException)] == [1, 3, 4, 2]
    later = queue.admit(NewJob(owner="anon-9", workflow="{}", input_path="x", share="address:a"), AdmissionRules(user_concurrency=4), None)
    assert later[2] == 5  # the share's lane again, behind its own
