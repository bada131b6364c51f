"""The embedded wiring's parts: the fair queue in memory, kept with the store, and this machine's worker processes.

Both are used from the service's writer thread only (the worker pool's own thread hands its messages there), so
the queue, the job states and the pool's slots change in one order, and the event loop never waits on them.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, assert_never

from sqlalchemy import Connection

from oldphoto.engine.context import RunOptions
from oldphoto.engine.graph import Workflow, parse_workflow
from oldphoto.jobs import announcements, querymaps
from oldphoto.jobs.admission import REFUSALS, AdmissionRules, only
from oldphoto.jobs.durations import Durations
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.messages import Cancelled, Crashed, Done, Failed, Measured, Noted, Previewed, Ready, TimedOut, WorkerMessage
from oldphoto.jobs.recorder import Recorder
from oldphoto.jobs.scheduler import FairQueue
from oldphoto.jobs.store import Job, JobStore, NewJob
from oldphoto.jobs.waits import WaitAt, no_wait
from oldphoto.jobs.workers import WorkerPool
from oldphoto.protocol import JobEvent

if TYPE_CHECKING:
    from oldphoto.jobs.service import Capacity, JobService, ServiceConfig

log = logging.getLogger(__name__)
Admitted = tuple[Job, list[JobEvent], int]  # the job, its `upload` and `queued` events, its place


def _counted(new: NewJob) -> list[str]:
    return [f"owner:{new.owner}"] + ([f"share:{new.share}"] if new.share else [])


class LocalQueue:
    """`FairQueue` in memory; each admission and withdrawal recorded in the store in the same step."""

    in_database = False

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.fair = FairQueue()
        self.wait_at: WaitAt = no_wait  # the service's estimate of a place's wait (jobs/waits.py)

    def __len__(self) -> int:
        return len(self.fair)

    def admit(self, new: NewJob, rules: AdmissionRules, blob: bytes | None) -> Admitted:
        return only(self.admit_many([(new, blob)], rules))

    def admit_many(self, items: list[tuple[NewJob, bytes | None]], rules: AdmissionRules) -> list[Admitted | BaseException]:
        """The jobs the rules allow, in the order asked, in one transaction (one commit for the batch); each job's
        recorded place is its place once the whole batch is in."""
        verdicts: list[BaseException | None] = []
        entering: list[NewJob] = []
        try:
            with self.store.engine.begin() as connection:
                taken: Counter[str] = Counter()  # owners and shares admitted in this batch, not in the store yet
                for new, _ in items:
                    try:
                        of_owner, of_share = self._active(new, connection, taken)
                        rules.check(of_owner, len(self.fair) + len(entering), of_share)
                    except REFUSALS as refused:
                        verdicts.append(refused)
                        continue
                    verdicts.append(None)
                    entering.append(new)
                    taken.update(_counted(new))
                places = self.fair.push_many([(new.id, new.lane) for new in entering])
                admitted = self._record(entering, places, connection) if entering else iter(())
        except BaseException:
            for new in entering:
                self.fair.remove(new.id)  # not durable, so not waiting
            raise
        return [verdict if verdict is not None else next(admitted) for verdict in verdicts]

    def _active(self, new: NewJob, connection: Connection, taken: Counter[str]) -> tuple[int, int | None]:
        """(the owner's active jobs, its share's or None), counting the batch's."""
        owner = self.store.count_active(new.owner, connection) + taken[f"owner:{new.owner}"]
        if new.share is None:
            return owner, None
        return owner, self.store.count_active(connection=connection, share=new.share) + taken[f"share:{new.share}"]

    def _record(self, entering: list[NewJob], places: list[int], connection: Connection) -> Iterator[Admitted]:
        uploads = [announcements.uploaded(new.id) for new in entering]
        jobs = self.store.create_many(list(zip(entering, uploads, strict=True)), connection)
        waiting = len(self.fair)
        first_places = [(new.id, announcements.queued(p, 0, self.wait_at(p, waiting))) for new, p in zip(entering, places, strict=True)]
        queued = self.store.append_second(first_places, connection)
        recorded = zip(jobs, uploads, queued, places, strict=True)
        return iter([(replace(job, last_seq=2), [upload, said], place) for job, upload, said, place in recorded])

    def withdraw(self, job_id: str, final: dict[str, Any]) -> JobEvent | None:
        if not self.fair.remove(job_id):
            return None
        return self.store.append(job_id, final, JobStatus.CANCELLED)

    def start_next(self) -> Job | None:
        """The next waiting job, marked running; jobs that stopped waiting meanwhile are skipped."""
        while (job_id := self.fair.pop()) is not None:
            job = self.store.get(job_id)
            if job is not None and job.status == JobStatus.QUEUED:
                self.store.set_status(job_id, JobStatus.RUNNING)
                return job
        return None

    def put_back(self, job: Job) -> JobEvent | None:
        """A job that waits again after a restart; one that had started hears its place (its view moves back)."""
        self.fair.push(job.id, job.lane)
        if job.stage in announcements.WAITING_STAGES:
            return None
        place = self.fair.place_of(job.id) or 1
        return self.store.append(job.id, announcements.queued(place, job.progress, self.wait_at(place, len(self.fair))))

    def positions(self) -> dict[str, int]:
        return self.fair.positions()


class LocalWorkers:
    """This machine's worker processes (`WorkerPool`) as the service's runner."""

    def __init__(self, config: ServiceConfig, queue: LocalQueue, *, max_rss_mb: float | None = None) -> None:
        self.config = config
        self.queue = queue
        self.store = queue.store
        self.pool = WorkerPool(
            config.workers,
            self._from_pool,
            job_timeout_s=config.job_timeout_s,
            slots=config.jobs_per_worker,
            max_rss_mb=max_rss_mb,
            warm=config.run_options,
            log_format=config.log_format,
        )
        self.durations = Durations(self.store, config.run_options)
        self.service: JobService | None = None
        self.recorder: Recorder | None = None  # what the workers say, recorded by the service's writer thread
        self._stopping = False
        self._draining = False

    async def start(self, service: JobService) -> None:
        self.service = service
        self.recorder = Recorder(
            self.store,
            service.publish,
            self.config.results_dir,
            self.config.job_timeout_s,
            self.durations,
            service.telemetry,
            tell=service.tell,
        )
        await service.offload.write(self._recover)
        await asyncio.to_thread(self.pool.start)
        await service.offload.write(service.queue_changed)

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.to_thread(self.pool.stop)
        assert self.service is not None
        await self.service.offload.write(self._hand_back)

    @property
    def _recorder(self) -> Recorder:
        assert self.recorder is not None, "LocalWorkers.start makes it"
        return self.recorder

    def take_input(self, job_id: str, upload: Path) -> tuple[str, bytes | None]:
        stored = self.config.inputs_dir / job_id
        shutil.move(str(upload), stored)
        return str(stored), None

    def queue_changed(self, at: float) -> None:
        """Start what fits: the next jobs in fair order, onto free worker slots."""
        assert self.service is not None
        recorder = self._recorder
        while not self._draining and (place := self.pool.idle()) is not None:
            job = self.queue.start_next()
            if job is None:
                return
            recorder.started(job.id, job.progress, job.created_at.timestamp())
            expected = self.durations.expected(self.durations.model_of(job))
            self.pool.assign(place, self.config.work_item(job.id, job.input_path, job.workflow, job.model, expected))

    def cancel_running(self, job_id: str) -> None:
        self.pool.cancel(job_id)

    def backends(self) -> list[dict[str, Any]]:
        return []

    def admits(self, text: str, options: RunOptions) -> Workflow | None:
        return parse_workflow(text, options)

    def drain(self) -> None:
        self._draining = True

    def running_here(self) -> int:
        """Jobs whose outcome is not recorded yet: a worker's `Done` is still on its way to the writer until then."""
        return len(self._recorder.running)

    def result_path(self, job: Job) -> Path | None:
        path = Path(job.result_path) if job.result_path else None
        return path if path is not None and path.is_file() else None

    def query_maps_path(self, job: Job) -> Path | None:
        path = querymaps.path_for(Path(job.result_path)) if job.result_path else None
        return path if path is not None and path.is_file() else None

    def capacity(self, queued: int) -> Capacity:
        from oldphoto.jobs.service import Capacity

        alive = sum(1 for w in self.pool.workers if w.process.is_alive())
        return Capacity(workers=alive, workers_ready=self.pool.ready_count(), queued=queued, running=len(self.pool.running()))

    @property
    def workers_recycled(self) -> int:
        """Worker processes replaced for holding too much memory after a job, since start (for /metrics)."""
        return self.pool.recycled

    def local_files(self, job: Job) -> list[Path]:
        files = [Path(path) for path in (job.input_path, job.result_path) if path]
        return [*files, querymaps.path_for(Path(job.result_path))] if job.result_path else files

    # -- the writer's side -------------------------------------------------------------------------------------

    def _from_pool(self, message: WorkerMessage) -> None:
        """On the pool's thread: the writer records it, in the order the pool heard it."""
        if self.service is not None and not self._stopping:
            self.service.offload.write_later(self._on_message, message)

    def _on_message(self, message: WorkerMessage) -> None:
        assert self.service is not None
        match message:
            case Ready():
                self.service.queue_changed()  # a new worker takes jobs: the next ones start
            case Noted() | Previewed() | Measured() | Done() | Failed() | Cancelled() | Crashed() | TimedOut():
                if self._recorder.on_message(message):
                    self.service.queue_changed()  # a slot is free: the next job starts
            case _:
                assert_never(message)

    def _recover(self) -> None:
        """After a restart: jobs that were running wait again once, then are `interrupted`; all waiting ones queue."""
        assert self.service is not None
        recorder = self._recorder
        for job in self.store.with_status(JobStatus.RUNNING):
            if job.attempts >= 1:
                recorder.fail(job.id, "interrupted", "The server stopped twice while running this job.")
            else:
                self.store.set_status(job.id, JobStatus.QUEUED, attempts=job.attempts + 1)
        for job in self.store.with_status(JobStatus.QUEUED):
            recorder.floors.setdefault(job.id, job.progress)
            told = self.queue.put_back(job)
            if told is not None:
                self.service.publish(told)

    def _hand_back(self) -> None:
        """A graceful stop is no failure of the job: it waits for the next start without spending its one retry."""
        for job in self.store.with_status(JobStatus.RUNNING):
            self.store.set_status(job.id, JobStatus.QUEUED)


