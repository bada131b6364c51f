"""What worker processes say, turned into recorded and published events: one place for the embedded service and
for `oldphoto worker`.

A note is recorded with a progress that never falls below the job's floor (where a re-run job had got to); an
outcome ends the job once. The stage changes recorded are kept for the job's end: a succeeded job's stage durations
teach the ETAs (jobs/durations.py), and every job's stages that ended, its queue wait and its final status are tallied
for /metrics (jobs/telemetry.py). Words about a job whose outcome is already recorded (a note after its time limit, say)
are dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, assert_never

from oldphoto.jobs import announcements, previews
from oldphoto.jobs.durations import Durations, Marks
from oldphoto.jobs.lifecycle import FINAL_STATUSES, JobStatus
from oldphoto.jobs.messages import Cancelled, Crashed, Done, Failed, JobMessage, Noted, Outcome, Previewed, TimedOut
from oldphoto.jobs.store import Job, JobStore
from oldphoto.jobs.telemetry import JobTelemetry
from oldphoto.protocol import JobEvent, Note

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        store: JobStore,
        publish: Callable[[JobEvent], None],
        results_dir: Path,
        job_timeout_s: float,
        durations: Durations | None = None,
        telemetry: JobTelemetry | None = None,
    ) -> None:
        self.store = store
        self.durations = durations
        self.telemetry = telemetry or JobTelemetry()
        self.marks: dict[str, Marks] = {}
        self.publish = publish
        self.results_dir = results_dir
        self.job_timeout_s = job_timeout_s
        self.running: set[str] = set()  # jobs handed to a worker whose outcome is not recorded yet
        self.floors: dict[str, int] = {}  # progress a re-run job must not fall below

    def started(self, job_id: str, progress: int, admitted_at: float | None = None) -> None:
        """`admitted_at` (epoch seconds): when the job entered the queue, for the queue-wait histogram."""
        self.running.add(job_id)
        self.floors.setdefault(job_id, progress)
        self.marks[job_id] = Marks()
        if admitted_at is not None:
            self.telemetry.started(time.time() - admitted_at)

    def on_message(self, message: JobMessage) -> bool:
        """Record a worker's message about a job; True when that job has ended (its slot is free again)."""
        if message.job_id not in self.running:
            return False
        match message:
            case Noted(job_id, note):  # the most frequent message by far: no store read
                self._on_note(job_id, note)
                return False
            case Previewed(job_id, note, image):
                self._on_preview(job_id, note, image)
                return False
            case Done() | Failed() | Cancelled() | Crashed() | TimedOut():
                self._end(message)
                return True
            case _:
                assert_never(message)

    def record(self, job_id: str, event: JobEvent | dict[str, Any], status: JobStatus | None = None, **fields: Any) -> JobEvent:
        recorded = self.store.append(job_id, event, status, **fields)
        if status in FINAL_STATUSES:  # counted once recorded: a failed append counts nothing
            self.telemetry.finished(status.value)
            log.info("job %s %s", job_id, status.value, extra={"job_id": job_id})
        self.publish(recorded)
        return recorded

    def fail(self, job_id: str, code: str, message: str) -> None:
        job = self.store.get(job_id)
        stage = job.stage if job else "preprocess"
        self.record(job_id, announcements.failed(stage, code, message), JobStatus.FAILED, error=message, code=code)

    def _on_note(self, job_id: str, note: Note) -> None:
        progress = max(note.progress, self.floors.get(job_id, 0))
        recorded = self.record(job_id, note.model_copy(update={"progress": progress}).model_dump())
        marks = self.marks.get(job_id)
        if marks is not None and note.node is not None and note.step_progress is None:
            marks.said(note.node, note.stage, recorded.ts)

    def _on_preview(self, job_id: str, note: Note, image: bytes) -> None:
        """The picture is kept first, then the event that names it: whoever hears the event finds it (or a newer one)."""
        previews.keep(self.store, job_id, image)
        self._on_note(job_id, previews.named(job_id, note))

    def _end(self, outcome: Outcome) -> None:
        self.running.discard(outcome.job_id)
        job = self.store.get(outcome.job_id)
        marks = self.marks.pop(outcome.job_id, None)
        if job is not None and job.status == JobStatus.RUNNING:
            ended = self._on_outcome(outcome, job.stage, job.progress)
            if marks is not None:
                self._tally_stages(job, marks, ended.ts if ended is not None else None)
            if isinstance(outcome, Done) and ended is not None and marks is not None:
                self._learn(job, marks, ended.ts)
        self.floors.pop(outcome.job_id, None)

    def _tally_stages(self, job: Job, marks: Marks, completed: float | None) -> None:
        """Every stage that ended into the stage histogram: all of a succeeded job's (`completed`: its `complete`
        event's time; the last one as `<stage>+save`, as learned), and the stages of an ended job that another
        stage followed; its last one was cut short, and would say nothing of how long that stage takes."""
        if not marks.stages:  # it ended before saying any stage
            return
        spans = marks.durations(completed if completed is not None else time.time())
        if completed is None:
            spans = spans[:-1]
        types = self.durations.node_types(job) if self.durations is not None and spans else {}
        for node, stage, seconds in spans:
            self.telemetry.stage_ended(stage, types.get(node, ""), seconds)

    def _learn(self, job: Job, marks: Marks, ended: float) -> None:
        if self.durations is None:
            return
        try:
            self.durations.learn(job, marks, ended)
        except Exception:  # an ETA that learns nothing this time is no reason to lose the job's outcome
            log.exception("job %s: its stage durations were not learned", job.id, extra={"job_id": job.id})

    def _on_outcome(self, outcome: Outcome, stage: str, progress: int) -> JobEvent | None:
        """Records the outcome; returns the `complete` event of a succeeded job."""
        match outcome:
            case Done(job_id):
                path = self.results_dir / f"{job_id}.png"
                return self.record(job_id, announcements.complete(job_id), JobStatus.SUCCEEDED, result_path=str(path))
            case Cancelled(job_id):
                self.record(job_id, announcements.ended("cancelled", stage, progress), JobStatus.CANCELLED)
            case Failed(job_id, code, message):
                self.fail(job_id, code, message)
            case Crashed(job_id, reason, code):
                self.fail(job_id, code, reason)
            case TimedOut(job_id):
                self.fail(job_id, "timeout", f"The job took longer than the limit of {self.job_timeout_s:g} seconds.")
            case _:
                assert_never(outcome)
        return None
