"""JobService: the one door to the job system, the same class in both wirings.

What differs between running jobs on this machine (embedded) and on worker nodes anywhere (scale-out) is two parts
handed in: the `Queue` (the in-memory fair queue kept with the store, or the shared one in the database) and the
`Runner` (this machine's worker processes, or the worker nodes reached through Redis). Everything else is shared:
admission rules, the recorder, live places, retention, and the rule that the event loop never waits: every change
goes to the writer thread of `Offload` (in order: it owns the queue), every read to its reader threads, and what the
writer records is published back on the loop in the order it was recorded.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from oldphoto.engine import RunOptions
from oldphoto.engine.eta import Expected
from oldphoto.engine.graph import Workflow
from oldphoto.jobs import announcements, querymaps
from oldphoto.jobs.admission import AdmissionRules
from oldphoto.jobs.batches import Batches
from oldphoto.jobs.bus import Bus
from oldphoto.jobs.durations import Durations
from oldphoto.jobs.errors import AlreadyFinished, JobNotFound
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.offload import Offload
from oldphoto.jobs.places import Places
from oldphoto.jobs.store import Job, JobStore, NewJob, new_job_id, utcnow
from oldphoto.jobs.telemetry import JobTelemetry
from oldphoto.jobs.waits import WaitAt, Waits
from oldphoto.jobs.work import WorkItem
from oldphoto.logs import LogFormat
from oldphoto.protocol import JobEvent, LiveMetrics, LivePlace

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
    places_interval_s: float = 0.1  # queue places are told at most this often (coalesced)
    log_format: LogFormat | None = None  # how the worker processes write their log lines (None: Python's default)

    @property
    def inputs_dir(self) -> Path:
        return self.data_dir / "inputs"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    def work_item(self, job_id: str, input_path: str, workflow: str, model: str | None, expected: Expected | None = None) -> WorkItem:
        """What a worker process is handed for a job: its own model, if it named one, over the run's defaults, and
        what its stages are expected to take."""
        options = replace(self.run_options, model=model) if model else self.run_options
        result = str(self.results_dir / f"{job_id}.png")
        return WorkItem(job_id, input_path, result, workflow, options, self.max_pixels, expected or Expected())

    @property
    def retry_after_s(self) -> int:
        return max(5, min(300, int(self.job_timeout_s // 10)))


@dataclass(frozen=True)
class Admission:
    job: Job
    position: int  # its place in the queue when admitted (1: next to run), as recorded in its `queued` event


@dataclass(frozen=True)
class Pending:
    """An admission asked for: the job, and its photo's bytes when the queue keeps them (None: kept on disk)."""

    new: NewJob
    blob: bytes | None


Admitted = tuple[Job, builtins.list[JobEvent], int]  # the job, its `upload` and `queued` events, its place
Batch = builtins.list[tuple[NewJob, bytes | None]]  # jobs to admit, each with its photo's bytes or None


@dataclass(frozen=True)
class Capacity:
    """What /healthz and /metrics say of the workers: job slots alive and ready, jobs waiting and running."""

    workers: int
    workers_ready: int
    queued: int
    running: int
    worker_nodes: int | None = None  # scale-out only

    @property
    def degraded(self) -> bool:
        return self.workers_ready == 0

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class Queue(Protocol):
    """A fair queue kept with the job store. Its changes run on the service's writer thread only."""

    # True: the database keeps the queue, orders every change (several may run at once) and answers reads from
    # any thread. False: the queue lives in the writer thread's memory; it alone changes and reads it.
    in_database: bool
    wait_at: WaitAt  # what a job entering the line at a place is told it waits (set by the service)

    def __len__(self) -> int: ...

    def admit_many(self, items: Batch, rules: AdmissionRules) -> builtins.list[Admitted | BaseException]:
        """For each job in order: check the rules and record it, its `upload` and `queued` events and its place, all
        in one transaction; a refused job gets its refusal (jobs/admission.py `REFUSALS`) and leaves nothing."""

    def withdraw(self, job_id: str, final: dict[str, Any]) -> JobEvent | None:
        """Take a waiting job out and record its final event, in one step; None when it is not waiting."""

    def positions(self) -> dict[str, int]: ...


class Runner(Protocol):
    """Where admitted jobs run. Methods other than start/stop run on the service's threads, never the loop's."""

    async def start(self, service: JobService) -> None: ...
    async def stop(self) -> None: ...

    def take_input(self, job_id: str, upload: Path) -> tuple[str, bytes | None]:
        """Keep the uploaded photo: the path the job records, and the bytes to store with it (None: kept on disk)."""

    def queue_changed(self, at: float) -> None:
        """The queue moved (writer thread): start what fits here, or tell the worker nodes."""

    def cancel_running(self, job_id: str) -> None: ...

    def admits(self, text: str, options: RunOptions) -> Workflow | None:
        """The workflow as the engine will run it (its cost is judged before admission), or None for a prompt the
        backend runs as it is (ComfyUI's own nodes); InvalidWorkflow, naming the node, when it cannot run here."""

    def backends(self) -> builtins.list[dict[str, Any]]:
        """The outside services jobs run on and their state, for /healthz (ComfyUI instances); empty for the engine."""

    def drain(self) -> None:
        """Start no more jobs on this machine (writer thread); queued ones wait for the next start or another node."""

    def running_here(self) -> int:
        """Jobs running on this machine's own worker processes now (0 where jobs run elsewhere)."""

    def result_path(self, job: Job) -> Path | None: ...
    def query_maps_path(self, job: Job) -> Path | None: ...
    def capacity(self, queued: int) -> Capacity: ...
    def local_files(self, job: Job) -> list[Path]: ...


class JobService:
    def __init__(
        self, config: ServiceConfig, store: JobStore, bus: Bus, queue: Queue, runner: Runner, offload: Offload | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.queue = queue
        self.runner = runner
        self.offload = offload or Offload()
        # This process's tallies for /metrics (jobs/telemetry.py says who counts what where).
        self.telemetry = JobTelemetry()
        self.rules = AdmissionRules(config.user_concurrency, config.queue_max, config.retry_after_s)
        self.waits = Waits(Durations(store, config.run_options).job_seconds)
        queue.wait_at = self.waits.at_place
        self.places = Places(bus, self._positions, self._workers_running, interval_s=config.places_interval_s, read_waits=self._waits)
        # Admissions asked for while one batch is recorded wait together for the next (one commit for all).
        where = self.offload.transact if queue.in_database else self.offload.write
        self.admissions: Batches[Pending, tuple[Job, int]] = Batches(self._admit_batch, where)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._janitor: asyncio.Task[None] | None = None
        self.draining = False
        config.inputs_dir.mkdir(parents=True, exist_ok=True)
        config.results_dir.mkdir(parents=True, exist_ok=True)

    # -- lifetime ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.runner.start(self)
        self.places.start()
        self._janitor = asyncio.create_task(self._retention_loop())

    async def drain(self) -> None:
        """The first step of a graceful stop (jobs/shutdown.py): no new job starts here; the running ones go on.
        Admission stays open: what is admitted meanwhile is durable and runs after the restart."""
        self.draining = True
        await self.offload.write(self.runner.drain)

    def running_here(self) -> int:
        return self.runner.running_here()

    async def settled(self) -> None:
        """Returns once what the writer has recorded so far has been handed to the loop (its events published)."""
        await self.offload.write(lambda: None)

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        await self.places.stop()
        await self.runner.stop()
        await asyncio.to_thread(self.offload.close)

    # -- what fronts call (on the loop; nothing here waits on the store but through `offload`) ---------------

    async def submit(
        self, owner: str, input_file: Path, workflow: str, model: str | None = None, share: str | None = None, pixels: int | None = None
    ) -> Admission:
        """Admit a job. Its input, row, `upload` event and place are durable before this returns. A `share` is counted
        beside the owner (NewJob.share); `pixels` is the photo's size, for its expected seconds."""
        job_id = new_job_id()
        input_path, blob = await asyncio.to_thread(self.runner.take_input, job_id, input_file)
        try:
            new = NewJob(owner, workflow, input_path, model, id=job_id, share=share, pixels=pixels)
            job, position = await self.admissions(Pending(new, blob))
        except Exception:  # refused or failed: nothing refers to the input. (Cancelled meanwhile: it may be admitted.)
            await asyncio.to_thread(Path(input_path).unlink, missing_ok=True)
            raise
        return Admission(job, position)

    async def get(self, job_id: str, owner: str) -> Job:
        """Another user's job answers exactly as one that does not exist."""
        job = await self.offload.read(self.store.get, job_id)
        if job is None or job.owner != owner:
            raise JobNotFound()
        return job

    async def list(self, owner: str, limit: int = 50) -> list[Job]:
        return await self.offload.read(self.store.list_for, owner, limit)

    async def cancel(self, job_id: str, owner: str) -> Job:
        job = await self.get(job_id, owner)
        if job.status == JobStatus.CANCELLED:
            return job
        if job.status.is_final:
            raise AlreadyFinished(f"This job has already {job.status.value}; there is nothing to cancel.")
        return await self.offload.write(self._cancel, job)

    async def events_after(self, job_id: str, seq: int = 0) -> builtins.list[JobEvent]:
        return await self.offload.read(self.store.events_after, job_id, seq)

    async def result_path(self, job: Job) -> Path | None:
        if job.status != JobStatus.SUCCEEDED:
            return None
        return await self.offload.read(self.runner.result_path, job)

    async def query_maps_path(self, job: Job) -> Path | None:
        """A finished colorize job's colour-query maps (jobs/querymaps.py), if it has them."""
        if job.status != JobStatus.SUCCEEDED:
            return None
        return await self.offload.read(self.runner.query_maps_path, job)

    async def capacity(self) -> Capacity:
        # An in-memory queue's len() read from a reader thread races harmlessly: it is one number.
        return await self.offload.read(lambda: self.runner.capacity(len(self.queue)))

    async def active_count(self, owner: str | None = None, share: str | None = None) -> int:
        """Queued and running jobs of an owner, or of a share."""
        return await self.offload.read(lambda: self.store.count_active(owner, share=share))

    async def job_counts(self) -> dict[str, int]:
        return await self.offload.read(self.store.count_by_status)

    def position(self, job_id: str) -> int | None:
        """The live place (no I/O: as of the last pass of `Places`)."""
        return self.places.position(job_id)

    def place_event(self, job_id: str, position: int) -> LivePlace:
        return self.places.event(job_id, position)

    async def purge_expired(self) -> int:
        """Remove finished jobs older than the retention time, with their files. Returns how many."""
        return await self.offload.write(self._purge)

    # -- for the runners, on any thread --------------------------------------------------------------------------

    def publish(self, event: JobEvent) -> None:
        """Recorded events reach the bus on the loop, in the order the writer recorded them."""
        self.call_on_loop(self.bus.publish, event)

    def tell(self, event: LiveMetrics) -> None:
        """A running job's metrics, to its followers here (never recorded)."""
        self.call_on_loop(self.bus.tell, event)

    def call_on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        if _running_on(loop):
            fn(*args)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is left to tell
                loop.call_soon_threadsafe(fn, *args)

    def queue_changed(self) -> None:
        """On the writer thread, after any move of the queue: the runner reacts, and the places are told."""
        at = time.time()
        self.runner.queue_changed(at)
        self.call_on_loop(self.places.moved, at)

    # -- the writer's side -----------------------------------------------------------------------------------

    def _admit_batch(self, batch: builtins.list[Pending]) -> builtins.list[tuple[Job, int] | BaseException]:
        answers = self.queue.admit_many([(pending.new, pending.blob) for pending in batch], self.rules)
        admitted = [answer for answer in answers if not isinstance(answer, BaseException)]
        for _, events, _ in admitted:
            for event in events:
                self.publish(event)
        if admitted:
            self.queue_changed()
        return [answer if isinstance(answer, BaseException) else (answer[0], answer[2]) for answer in answers]

    def _cancel(self, job: Job) -> Job:
        withdrawn = self.queue.withdraw(job.id, announcements.ended("cancelled", job.stage, job.progress))
        if withdrawn is not None:
            self.telemetry.finished(JobStatus.CANCELLED.value)  # it never started: no recorder hears of it
            self.publish(withdrawn)
            self.queue_changed()
        else:
            self.runner.cancel_running(job.id)  # it stops at its next block or tile and says so
        return self.store.get(job.id) or job

    def _purge(self) -> int:
        expired = self.store.finished_before(utcnow() - timedelta(seconds=self.config.retention_s))
        for job in expired:
            for path in self.runner.local_files(job):
                path.unlink(missing_ok=True)
            self.store.delete(job.id)
        # Results whose job is gone (purged by another node, or left by a crash) go too.
        for copy in self.config.results_dir.glob("*.png"):
            if self.store.get(copy.stem) is None:
                copy.unlink(missing_ok=True)
        for maps in self.config.results_dir.glob(f"*{querymaps.SUFFIX}"):
            owner = querymaps.job_of(maps)
            if owner is not None and self.store.get(owner) is None:
                maps.unlink(missing_ok=True)
        return len(expired)

    # -- places and retention --------------------------------------------------------------------------------

    async def _positions(self) -> dict[str, int]:
        if self.queue.in_database:
            return await self.offload.read(self.queue.positions)
        return await self.offload.write(self.queue.positions)

    async def _waits(self, positions: dict[str, int]) -> dict[str, float]:
        """Each waiting job's expected wait, on a reader thread: one read of the active jobs."""
        slots = (await self.capacity()).workers_ready
        active = await self.offload.read(self.store.with_status, JobStatus.QUEUED, JobStatus.RUNNING)
        return await self.offload.read(self.waits.update, positions, active, slots, utcnow())

    async def _workers_running(self) -> bool:
        return not (await self.capacity()).degraded

    async def _retention_loop(self) -> None:
        interval = max(1.0, min(600.0, self.config.retention_s / 10))
        while True:
            try:
                await self.purge_expired()
            except Exception:  # the store may be away for a moment; the next round tries again
                log.exception("retention purge failed")
            await asyncio.sleep(interval)


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
