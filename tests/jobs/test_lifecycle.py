"""A Hypothesis state machine over the real store: a job is queued, may run (and be re-queued once after a
crash), and ends in exactly one of succeeded, failed or cancelled; no other transition is ever accepted."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from oldphoto.jobs.lifecycle import FINAL_STATUSES, TRANSITIONS, IllegalTransition, JobStatus
from oldphoto.jobs.store import JobStore, NewJob
from oldphoto.protocol import JobEvent

ALLOWED = {
    (JobStatus.QUEUED, JobStatus.RUNNING),
    (JobStatus.QUEUED, JobStatus.CANCELLED),
    (JobStatus.QUEUED, JobStatus.FAILED),
    (JobStatus.RUNNING, JobStatus.SUCCEEDED),
    (JobStatus.RUNNING, JobStatus.FAILED),
    (JobStatus.RUNNING, JobStatus.CANCELLED),
    (JobStatus.RUNNING, JobStatus.QUEUED),
}


def test_the_transition_table_is_exactly_the_documented_one() -> None:
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == ALLOWED


class JobMachine(RuleBasedStateMachine):
    @initialize()
    def open_store(self) -> None:
        self.folder = tempfile.TemporaryDirectory()
        self.store = JobStore(f"sqlite:///{Path(self.folder.name) / 'jobs.sqlite3'}")
        first = JobEvent(job_id="x", seq=1, stage="upload", message_key="upload", progress=0)
        self.job_id = self.store.create(NewJob(owner="u", workflow="{}", input_path="x"), first).id
        self.model = JobStatus.QUEUED
        self.events = 1

    @rule(status=st.sampled_from(list(JobStatus)))
    def move(self, status: JobStatus) -> None:
        event = {"type": "progress", "stage": "inference", "message_key": "inference", "progress": 0}
        try:
            self.store.append(self.job_id, event, status)
        except IllegalTransition:
            assert status != self.model and (self.model, status) not in ALLOWED
            return
        assert status == self.model or (self.model, status) in ALLOWED
        self.model = status
        self.events += 1

    @invariant()
    def store_agrees(self) -> None:
        if hasattr(self, "store"):
            job = self.store.get(self.job_id)
            assert job.status == self.model
            assert job.last_seq == self.events
            assert (job.finished_at is not None) == (self.model in FINAL_STATUSES)

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
            self.folder.cleanup()


TestJobMachine = JobMachine.TestCase
TestJobMachine.settings = settings(max_examples=30, stateful_step_count=15, deadline=None)


def test_an_illegal_transition_says_which() -> None:
    from oldphoto.jobs.lifecycle import check_transition

    try:
        check_transition(JobStatus.SUCCEEDED, JobStatus.RUNNING)
    except IllegalTransition as exc:
        assert str(exc) == f"a {JobStatus.SUCCEEDED} job cannot become {JobStatus.RUNNING}"
    else:
        raise AssertionError("a finished job was allowed to run again")
