"""JobService: the one door to the job system. Admits jobs, schedules them fairly onto worker processes, records
every event durably before anyone sees it, and recovers what a restart interrupted.

All of its methods run on the event loop's thread; worker messages are handed over to that thread, so the queue,
the store's event sequence and the bus never race.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from oldphoto.engine import RunOptions
from oldphoto.jobs import announcements
from oldphoto.jobs.bus import Bus, LocalBus
from oldphoto.jobs.errors import AlreadyFinished, JobNotFound, QueueFull, UserLimit
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.recorder import Recorder
from oldphoto.jobs.scheduler import FairQueue
from oldphoto.jobs.store import EventItem, Job, JobStore, NewJob, new_job_id, utcnow
from oldphoto.jobs.work import Message, WorkItem
from oldphoto.jobs.workers import WorkerPool
from oldphoto.protocol import JobEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: Path
    run_options: RunOptions
    workers: int = 1
    user_concurrency: int = 3
    queue_max: int = 1000
    job_timeout_s: float = 600.0
    retention_s: float = 24 * 3600.0
    max_pixels: int = 40_000_000
    jobs_per_worker: int = 1  # more than one only when colorize batching is on

    @property
    def inputs_dir(self) -> Path:
        return self.data_dir / "inputs"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"


@dataclass(frozen=True)
class Admission:
    job: Job
    position: int  # its place in the queue when admitted (1: next to run)


class JobService:
    def __init__(self, config: ServiceConfig, store: JobStore, bus: Bus | None = None) -> None:
        self.config = config
        self.store = store
        self.bus: Bus = bus or LocalBus()
        self.queue = FairQueue()
        self.positions: dict[str, int] = {}
        self.recorder = Recorder(store, self._publish, config.results_dir, config.job_timeout_s)
        self.pool: WorkerPool | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._stopping = False
        config.inputs_dir.mkdir(parents=True, exist_ok=True)
        config.results_dir.mkdir(parents=True, exist_ok=True)

    # -- lifetime ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._recover()
        self.pool = WorkerPool(
            self.config.workers, self._from_pool, job_timeout_s=self.config.job_timeout_s, slots=self.config.jobs_per_worker
        )
        await asyncio.to_thread(self.pool.start)
        self._dispatch()
        self._janitor = asyncio.create_task(self._retention_loop())

    async def stop(self) -> None:
        self._stopping = True
        if self._janitor is not None:
            self._janitor.cancel()
        if self.pool is not None:
            await asyncio.to_thread(self.pool.stop)
        # A graceful stop is no failure of the job: it waits for the next start without spending its one retry.
        for job in self.store.with_status(JobStatus.RUNNING):
            self.store.set_status(job.id, JobStatus.QUEUED)

    def _recover(self) -> None:
        for job in self.store.with_status(JobStatus.RUNNING):
            if job.attempts >= 1:
                self._fail(job.id, "interrupted", "The server stopped twice while running this job.")
            else:
                self.store.set_status(job.id, JobStatus.QUEUED, attempts=job.attempts + 1)
        for job in self.store.with_status(JobStatus.QUEUED):
            self.recorder.floors.setdefault(job.id, job.progress)
            self.queue.push(job.id, job.owner)
        self._announce_positions()

    # -- what fronts call -------------------------------------------------------------------------------------

    def submit(self, owner: str, input_file: Path, workflow: str, model: str | None = None) -> Admission:
        """Admit a job. Its input, row and first event are durable before this returns."""
        active = self.store.count_active(owner)
        if active >= self.config.user_concurrency:
            raise UserLimit(
                f"You already have {active} jobs queued or running; the limit is {self.config.user_concurrency}. "
                "Wait for one to finish or cancel one.",
                retry_after=self._retry_after(),
            )
        if len(self.queue) >= self.config.queue_max:
            raise QueueFull("The queue is full right now. Please try again in a little while.", retry_after=self._retry_after())
        job_id = new_job_id()
        stored_input = self.config.inputs_dir / job_id
        shutil.move(str(input_file), stored_input)
        upload = JobEvent(job_id=job_id, seq=1, stage="upload", message_key="upload", progress=0)
        job = self.store.create(NewJob(owner=owner, workflow=workflow, input_path=str(stored_input), model=model, id=job_id), upload)
        self.bus.publish(upload)
        return Admission(job, self._enqueue(job_id, owner))

    def _enqueue(self, job_id: str, owner: str) -> int:
        """Put an admitted job in line, tell every moved job its place, start what can start; the job's place."""
        self.queue.push(job_id, owner)
        self._announce_positions()
        position = self.positions[job_id]
        self._dispatch()
        return position

    def get(self, job_id: str, owner: str) -> Job:
        """Another user's job answers exactly as one that does not exist."""
        job = self.store.get(job_id)
        if job is None or job.owner != owner:
            raise JobNotFound()
        return job

    def list(self, owner: str, limit: int = 50) -> list[Job]:
        return self.store.list_for(owner, limit)

    def position(self, job_id: str) -> int | None:
        return self.positions.get(job_id)

    def capacity(self) -> dict[str, int]:
        """What /healthz and /metrics say of the workers: processes alive, ready, jobs waiting and running."""
        pool = self.pool
        alive = sum(1 for w in pool.workers if w.process.is_alive()) if pool else 0
        ready = pool.ready_count() if pool else 0
        return {"workers": alive, "workers_ready": ready, "queued": len(self.queue), "running": len(pool.running()) if pool else 0}

    def events_after(self, job_id: str, seq: int = 0) -> builtins.list[JobEvent]:  # `list` here is the method above
        return self.store.events_after(job_id, seq)

    def result_path(self, job: Job) -> Path | None:
        if job.status != JobStatus.SUCCEEDED or not job.result_path:
            return None
        path = Path(job.result_path)
        return path if path.is_file() else None

    def cancel(self, job_id: str, owner: str) -> Job:
        job = self.get(job_id, owner)
        if job.status == JobStatus.CANCELLED:
            return job
        if job.status.is_final:
            raise AlreadyFinished(f"This job has already {job.status.value}; there is nothing to cancel.")
        if job.status == JobStatus.QUEUED and self.queue.remove(job_id):
            self._record(job_id, self._final_event("cancelled", job), JobStatus.CANCELLED)
            self._announce_positions()
        else:
            self._cancel_running(job_id)
        return self.store.get(job_id) or job

    def _cancel_running(self, job_id: str) -> None:
        if self.pool is not None:
            self.pool.cancel(job_id)  # the worker stops at its next block or tile and says so

    # -- the scheduling loop ----------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self.pool is None:
            return
        moved = False
        while len(self.queue) and (place := self.pool.idle()) is not None:
            job_id = self.queue.pop()
            job = self.store.get(job_id) if job_id else None
            if job_id is None or job is None or job.status != JobStatus.QUEUED:
                continue
            self.store.set_status(job_id, JobStatus.RUNNING)
            self.recorder.started(job_id, job.progress)
            self.positions.pop(job_id, None)
            self.pool.assign(place, self._work_item(job))
            moved = True
        if moved:
            self._announce_positions()

    def _work_item(self, job: Job) -> WorkItem:
        options = self.config.run_options
        if job.model:
            options = RunOptions(**{**options.__dict__, "model": job.model})
        return WorkItem(
            job_id=job.id,
            input_path=job.input_path,
            result_path=str(self.config.results_dir / f"{job.id}.png"),
            workflow=job.workflow,
            options=options,
            max_pixels=self.config.max_pixels,
        )

    def _from_pool(self, message: Message) -> None:
        """Called on the pool's thread: hand the message over to the loop's thread."""
        if self.loop is not None and not self.loop.is_closed() and not self._stopping:
            self.loop.call_soon_threadsafe(self._on_worker_message, message)

    def _on_worker_message(self, message: Message) -> None:
        if message[0] == "ready" or self.recorder.on_message(message):
            self._dispatch()

    # -- recording and telling --------------------------------------------------------------------------------

    def _publish(self, event: JobEvent) -> None:
        self.bus.publish(event)

    def _record(self, job_id: str, event: JobEvent | dict[str, Any], status: JobStatus | None = None, **fields: Any) -> JobEvent:
        return self.recorder.record(job_id, event, status, **fields)

    def _fail(self, job_id: str, code: str, message: str) -> None:
        self.recorder.fail(job_id, code, message)

    def _final_event(self, kind: str, job: Job) -> dict[str, Any]:
        return announcements.ended(kind, job.stage, job.progress)

    def _announce_positions(self) -> None:
        """A new `queued` event for every waiting job whose place changed, all in one transaction."""
        positions = self.queue.positions()
        changed = [(job_id, p) for job_id, p in positions.items() if self.positions.get(job_id) != p]
        self.positions = positions
        if not changed:
            return
        items: list[EventItem] = [(job_id, announcements.queued(p, self.recorder.floors.get(job_id, 0)), None, {}) for job_id, p in changed]
        for event in self.store.append_many(items):
            self.bus.publish(event)

    def _retry_after(self) -> int:
        return max(5, min(300, int(self.config.job_timeout_s // 10)))

    async def _retention_loop(self) -> None:
        interval = max(1.0, min(600.0, self.config.retention_s / 10))
        while True:
            self.purge_expired()
            await asyncio.sleep(interval)

    def purge_expired(self) -> int:
        """Remove finished jobs older than the retention time, with their files. Returns how many."""
        expired = self.store.finished_before(utcnow() - timedelta(seconds=self.config.retention_s))
        for job in expired:
            for path in self._local_files(job):
                path.unlink(missing_ok=True)
            self.store.delete(job.id)
        return len(expired)

    def _local_files(self, job: Job) -> builtins.list[Path]:
        return [Path(path) for path in (job.input_path, job.result_path) if path]
