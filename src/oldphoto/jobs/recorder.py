"""What worker processes say, turned into recorded and published events: one place for the embedded service and
for `oldphoto worker`.

A note is recorded with a progress that never falls below the job's floor (where a re-run job had got to); an
outcome ends the job once. The stage changes recorded are kept for the job's end: a succeeded job's stage durations
teach the ETAs (jobs/durations.py), and every job's stages that ended, its queue wait and its final status are tallied
for /metrics (jobs/telemetry.py). Words about a job whose outcome is already recorded (a note after its time limit, say)
are dropped.

A worker's metrics samples (`Measured`) are not recorded: each is told live to the job's followers (`tell`), and the
last one, with the job's stage times, becomes the summary its final event carries and its row keeps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, assert_never

from oldphoto.engine.eta import SAVE_SUFFIX
from oldphoto.jobs import announcements, previews
from oldphoto.jobs.durations import Durations, Marks
from oldphoto.jobs.lifecycle import FINAL_STATUSES, JobStatus
from oldphoto.jobs.messages import Cancelled, Crashed, Done, Failed, JobMessage, Measured, Noted, Outcome, Previewed, TimedOut
from oldphoto.jobs.store import Job, JobStore
from oldphoto.jobs.telemetry import JobTelemetry
from oldphoto.protocol import JobEvent, JobMetrics, LiveMetrics, Note, StageTime

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
        tell: Callable[[LiveMetrics], None] | None = None,
    ) -> None:
        self.store = store
        self.tell = tell
        self.durations = durations
        self.telemetry = telemetry or JobTelemetry()
        self.marks: dict[str, Marks] = {}
        self.publish = publish
        self.results_dir = results_dir
        self.job_timeout_s = job_timeout_s
        self.running: set[str] = set()  # jobs handed to a worker whose outcome is not recorded yet
        self.floors: dict[str, int] = {}  # progress a re-run job must not fall below
        self.measured: dict[str, Measured] = {}  # each running job's latest metrics sample

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
            case Measured(job_id, usage):
                self.measured[job_id] = message
                if self.tell is not None:
                    self.tell(LiveMetrics(job_id, usage, time.time()))
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
        self._failed(job_id, code, message, {})

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
        measured = self.measured.pop(outcome.job_id, None)
        if job is not None and job.status == JobStatus.RUNNING:
            summary = summed_up(marks, measured, time.time())
            ended = self._on_outcome(outcome, job.stage, job.progress, summary)
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

    def _on_outcome(self, outcome: Outcome, stage: str, progress: int, summary: JobMetrics | None) -> JobEvent | None:
        """Records the outcome with the run's summary; returns the `complete` event of a succeeded job."""
        metrics = {} if summary is None else {"metrics": summary.model_dump(exclude_none=True)}
        match outcome:
            case Done(job_id):
                path = self.results_dir / f"{job_id}.png"
                said = {**announcements.complete(job_id), **metrics}
                return self.record(job_id, said, JobStatus.SUCCEEDED, result_path=str(path), **metrics)
            case Cancelled(job_id):
                self.record(job_id, {**announcements.ended("cancelled", stage, progress), **metrics}, JobStatus.CANCELLED, **metrics)
            case Failed(job_id, code, message):
                self._failed(job_id, code, message, metrics)
            case Crashed(job_id, reason, code):
                self._failed(job_id, code, reason, metrics)
            case TimedOut(job_id):
                self._failed(job_id, "timeout", f"The job took longer than the limit of {self.job_timeout_s:g} seconds.", metrics)
            case _:
                assert_never(outcome)
        return None

    def _failed(self, job_id: str, code: str, message: str, metrics: dict[str, Any]) -> None:
        job = self.store.get(job_id)
        stage = job.stage if job else "preprocess"
        said = {**announcements.failed(stage, code, message), **metrics}
        self.record(job_id, said, JobStatus.FAILED, error=message, code=code, **metrics)


def summed_up(marks: Marks | None, measured: Measured | None, ended: float) -> JobMetrics | None:
    """A job's run: the time of each stage it said (the last one up to `ended`, its result saved), and what its worker
    measured last (peak memory, every node's speed). None for a job that said and measured nothing."""
    spans = marks.durations(ended) if marks is not None and marks.stages else []
    if not spans and measured is None:
        return None
    stages = [StageTime(node=node, stage=stage.removesuffix(SAVE_SUFFIX), seconds=round(seconds, 3)) for node, stage, seconds in spans]
    first = marks.stages[0][2] if marks is not None and marks.stages else ended
    usage = measured.usage if measured is not None else None
    return JobMetrics(
        elapsed_s=round(usage.elapsed_s if usage is not None else max(0.0, ended - first), 3),
        peak_rss_bytes=None if usage is None else usage.peak_rss_bytes,
        peak_cuda_bytes=None if usage is None else usage.peak_cuda_bytes,
        stages=stages,
        speeds=list(measured.speeds) if measured is not None else [],
    )
