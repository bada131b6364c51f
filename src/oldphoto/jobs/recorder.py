"""What worker processes say, turned into recorded and published events: one place for the embedded service and
for `oldphoto worker`.

A note is recorded with a progress that never falls below the job's floor (where a re-run job had got to); an
outcome ends the job once. Words about a job whose outcome is already recorded (a note after its time limit, say)
are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from oldphoto.jobs import announcements
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.store import JobStore
from oldphoto.jobs.work import Message
from oldphoto.protocol import JobEvent, Note


class Recorder:
    def __init__(self, store: JobStore, publish: Callable[[JobEvent], None], results_dir: Path, job_timeout_s: float) -> None:
        self.store = store
        self.publish = publish
        self.results_dir = results_dir
        self.job_timeout_s = job_timeout_s
        self.running: set[str] = set()  # jobs handed to a worker whose outcome is not recorded yet
        self.floors: dict[str, int] = {}  # progress a re-run job must not fall below

    def started(self, job_id: str, progress: int) -> None:
        self.running.add(job_id)
        self.floors.setdefault(job_id, progress)

    def on_message(self, message: Message) -> bool:
        """Record a worker's message about a job; True when that job has ended (its slot is free again)."""
        kind, job_id = message[0], message[1]
        if job_id not in self.running:
            return False
        if kind == "note":  # the most frequent message by far: no store read
            self._on_note(job_id, message[2])
            return False
        self.running.discard(job_id)
        job = self.store.get(job_id)
        if job is not None and job.status == JobStatus.RUNNING:
            self._on_outcome(kind, job_id, job.stage, job.progress, message)
        self.floors.pop(job_id, None)
        return True

    def record(self, job_id: str, event: JobEvent | dict[str, Any], status: JobStatus | None = None, **fields: Any) -> JobEvent:
        recorded = self.store.append(job_id, event, status, **fields)
        self.publish(recorded)
        return recorded

    def fail(self, job_id: str, code: str, message: str) -> None:
        job = self.store.get(job_id)
        stage = job.stage if job else "preprocess"
        self.record(job_id, announcements.failed(stage, code, message), JobStatus.FAILED, error=message, code=code)

    def _on_note(self, job_id: str, note: Note) -> None:
        progress = max(note.progress, self.floors.get(job_id, 0))
        self.record(job_id, note.model_copy(update={"progress": progress}).model_dump())

    def _on_outcome(self, kind: str, job_id: str, stage: str, progress: int, message: Message) -> None:
        if kind == "done":
            path = self.results_dir / f"{job_id}.png"
            self.record(job_id, announcements.complete(job_id), JobStatus.SUCCEEDED, result_path=str(path))
        elif kind == "cancelled":
            self.record(job_id, announcements.ended("cancelled", stage, progress), JobStatus.CANCELLED)
        elif kind == "failed":
            self.fail(job_id, message[2], message[3])
        elif kind == "crashed":
            self.fail(job_id, "worker_crashed", f"The worker running this job stopped unexpectedly (exit code {message[2]}).")
        elif kind == "timeout":
            self.fail(job_id, "timeout", f"The job took longer than the limit of {self.job_timeout_s:g} seconds.")
