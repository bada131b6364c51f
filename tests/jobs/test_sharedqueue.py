"""The shared fair queue (scale-out mode) hands out jobs in exactly the order of the in-memory FairQueue, on SQLite
and on PostgreSQL, and starting a job takes it out of the queue and marks it running in one step."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from oldphoto.jobs.admission import AdmissionRules
from oldphoto.jobs.errors import QueueFull, ShareLimit, UserLimit
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.scheduler import FairQueue
from oldphoto.jobs.sharedqueue import SharedQueue
from oldphoto.jobs.store import EventRow, JobRow, JobStore, LaneRow, NewJob, QueueEntryRow
from oldphoto.protocol import JobEvent
from tests.helpers.services import postgres_database

OWNERS = ["ann", "bob", "cy"]
Operation = tuple[str, int]  # ("push", owner index) | ("pop", 0) | ("remove", job index)


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
        assert all(shared.place_of(job) == reference.place_of(job) for job in pushed)
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


def test_admission_records_the_place_once_and_a_move_records_nothing_for_the_others(store: JobStore) -> None:
    queue, rules = SharedQueue(store), AdmissionRules(user_concurrency=5, queue_max=100)
    admitted = [queue.admit(NewJob(owner=owner, workflow="{}", input_path="x"), rules, b"photo") for owner in ("a", "a", "b")]
    (a0, _, p0), (a1, events, p1), (b0, _, p2) = admitted
    assert (p0, p1, p2) == (1, 2, 2)  # b0 goes before a1: users take turns
    assert [(e.type, e.seq, e.position) for e in events] == [("progress", 1, None), ("queued", 2, 2)]
    assert store.get_blob(a1.id, "input") == b"photo"
    rows = count_events(store)
    assert queue.start_next() == a0.id
    assert queue.withdraw(b0.id, {"type": "cancelled", "stage": "queued", "message_key": "cancelled", "progress": 0}).seq == 3
    assert count_events(store) == rows + 1  # only the cancelled job's own event: a1 moved from 3 to 1 in silence
    assert queue.positions() == {a1.id: 1}


def test_admission_applies_the_rules_in_its_transaction(store: JobStore) -> None:
    queue = SharedQueue(store)
    queue.admit(NewJob(owner="a", workflow="{}", input_path="x"), AdmissionRules(user_concurrency=1), None)
    with pytest.raises(UserLimit):
        queue.admit(NewJob(owner="a", workflow="{}", input_path="x"), AdmissionRules(user_concurrency=1), None)
    with pytest.raises(QueueFull):
        queue.admit(NewJob(owner="b", workflow="{}", input_path="x"), AdmissionRules(queue_max=1), None)
    assert len(queue) == 1 and store.count_active() == 1  # refused jobs leave nothing behind


def test_a_batch_of_admissions_applies_the_rules_in_order_counting_the_batch_and_leaves_nothing_of_a_refusal(store: JobStore) -> None:
    queue = SharedQueue(store)
    batch = [(NewJob(owner=owner, workflow="{}", input_path="x"), f"photo of {owner}".encode()) for owner in ("a", "a", "b", "a", "c")]
    answers = queue.admit_many(batch, AdmissionRules(user_concurrency=2, queue_max=3))
    places = [a if isinstance(a, BaseException) else a[2] for a in answers]
    assert places[:3] == [1, 3, 2]  # each once the batch is in: b's first goes before a's second
    assert isinstance(places[3], UserLimit) and isinstance(places[4], QueueFull)
    refused = [new.id for new, _ in batch[3:]]
    assert all(store.get(job_id) is None and store.get_blob(job_id, "input") is None for job_id in refused)
    assert all(store.events_after(job_id) == [] for job_id in refused)
    admitted = [a for a in answers if not isinstance(a, BaseException)]
    assert [store.get_blob(job.id, "input") for job, _, _ in admitted] == [b"photo of a", b"photo of a", b"photo of b"]
    (a1, _, _), (a2, _, _), (b1, _, _) = admitted
    assert queue.positions() == {a1.id: 1, b1.id: 2, a2.id: 3}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.sampled_from(OWNERS), min_size=1, max_size=6), min_size=1, max_size=5), pops=st.lists(st.booleans(), max_size=5))
def test_each_admitted_jobs_recorded_place_is_its_place_once_the_batch_is_in(store: JobStore, batches: list[list[str]], pops: list[bool]) -> None:
    """Places worked out for a whole batch at once (lanes opened at the back, others one by one) are the fair
    order's, whatever was waiting before."""
    empty(store)
    queue, rules = SharedQueue(store), AdmissionRules(user_concurrency=100, queue_max=1000)
    for i, owners in enumerate(batches):
        answers = queue.admit_many([(NewJob(owner=o, workflow="{}", input_path="x"), None) for o in owners], rules)
        positions = queue.positions()
        for answer in answers:
            assert not isinstance(answer, BaseException)
            job, events, place = answer
            assert positions[job.id] == place == events[-1].position
        if i < len(pops) and pops[i]:
            queue.start_next()


def test_jobs_of_one_share_take_one_lane_and_one_users_room(store: JobStore) -> None:
    """Four anonymous users of one address (a share) and one of another: the share's fourth job is refused, and
    the other address's job waits behind only the share's first, not behind each of its users."""
    queue = SharedQueue(store)
    crowd = [(NewJob(owner=f"anon-{i}", workflow="{}", input_path="x", share="address:a"), None) for i in range(4)]
    answers = queue.admit_many([*crowd, (NewJob(owner="anon-x", workflow="{}", input_path="x", share="address:b"), None)], AdmissionRules(user_concurrency=3))
    assert isinstance(answers[3], ShareLimit) and answers[3].code == "address_limit"
    places = [a[2] for a in answers if not isinstance(a, BaseException)]
    assert places == [1, 3, 4, 2]  # a's lane: 1, 3, 4; b's lane: 2
    assert store.count_active(share="address:a") == 3


def test_admission_limits_hold_exactly_at_their_edges_and_count_running_jobs(store: JobStore) -> None:
    """The same edges as the embedded queue's (tests/jobs/test_processes.py, limits): a user's running jobs count
    toward their limit, waiting ones toward the queue's; a job is refused at the limit, never one before it."""
    queue = SharedQueue(store)
    per_user = AdmissionRules(user_concurrency=2, queue_max=100)

    def admit(owner: str, rules: AdmissionRules = per_user) -> str:
        return queue.admit(NewJob(owner=owner, workflow="{}", input_path="x"), rules, None)[0].id

    first = admit("a")
    assert queue.start_next() == first  # running: still one of a's two
    admit("a")  # a's second: at the limit, not over it
    with pytest.raises(UserLimit):
        admit("a")
    assert store.count_active("a") == 2 and len(queue) == 1

    two_waiting = AdmissionRules(user_concurrency=100, queue_max=2)
    admit("b", two_waiting)  # one waiting (a's second): a running job takes no place in the queue
    with pytest.raises(QueueFull):
        admit("c", two_waiting)
    assert len(queue) == 2 and store.count_active() == 3
    queue.start_next()  # one leaves the line: there is room again
    admit("c", two_waiting)
    assert len(queue) == 2


def count_events(store: JobStore) -> int:
    with store.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(EventRow)) or 0
