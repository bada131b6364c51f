"""Worker processes: the models run here, never in the web process.

Each worker has its own pipe and one cancel flag per job slot, so a worker that dies (segfault, killed for
memory, `os._exit`) takes only its own jobs with it: the pool notices, reports the crash and starts a new worker in
its place. A worker runs one job at a time, or `slots` at once on threads when batching is on
(`OLDPHOTO_BATCH_MAX`), so that concurrent colorize jobs can share a forward pass.

After each job a worker gives back what memory it can and says how much it still holds (`Released`). One that
holds more than the pool's ceiling (`OLDPHOTO_WORKER_MAX_RSS_MB`) takes no more jobs and, once its last one has
ended, is told to stop and replaced by a fresh worker: no job is lost or failed for it (docs/jobs.md).
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, assert_never

from oldphoto import logs
from oldphoto.engine import RunOptions
from oldphoto.jobs.messages import (
    Cancelled,
    Crashed,
    Done,
    Failed,
    FromWorker,
    Measured,
    Noted,
    Previewed,
    Ready,
    Released,
    TimedOut,
    WorkerMessage,
    exited,
    restarted_beside,
)
from oldphoto.jobs.work import WorkItem
from oldphoto.lifeline import die_with_parent as _die_with_parent
from oldphoto.logs import LogFormat

log = logging.getLogger(__name__)
CONTEXT = mp.get_context("spawn")  # fork after torch or CUDA has started is unsafe
MB = 2**20
# A recycled worker was told to stop between jobs; one still alive this long after is killed.
RETIRE_GRACE_S = 30.0


def _worker_main(
    conn: Connection,
    cancel_flags: list[Any],
    cores_shared_by: int,
    parent: int = 0,
    warm: RunOptions | None = None,
    log_format: LogFormat | None = None,
) -> None:
    if parent:
        _die_with_parent(parent)
    if log_format is not None:  # the same lines as the process that started it (a job's traceback included)
        logging.config.dictConfig(logs.config(log_format, "WARNING"))
    from oldphoto.engine import CancelToken, warm_up
    from oldphoto.jobs.memory import give_back
    from oldphoto.jobs.work import execute
    from oldphoto.models.realesrgan import default_threads
    from oldphoto.models.runtimes import configure_threads, threads_per_job

    # Workers share the cores: each gets its part, so jobs that run at once do not fight over the same ones.
    configure_threads(threads_per_job(cores_shared_by))
    # ncnn's part too, counted here: the process that built the jobs' options (the web process) must not load ncnn.
    net_threads = default_threads(cores_shared_by)
    lock = threading.Lock()

    def send(message: FromWorker) -> None:
        with lock:
            conn.send(message)

    def run(slot: int, item: WorkItem) -> None:
        execute(item.with_threads(net_threads), CancelToken(cancel_flags[slot]), send)
        # After the outcome, so the job's owner does not wait for it.
        send(Released(give_back()))

    send(Ready())
    if warm is not None:  # the server's model, while this worker waits for its first job
        threading.Thread(target=warm_up, args=(warm,), name="warm-up").start()
    while True:
        try:
            task = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if task is None:
            return
        slot, item = task
        if len(cancel_flags) == 1:
            run(slot, item)
        else:
            threading.Thread(target=run, args=(slot, item), name=f"job-{item.job_id}", daemon=True).start()


@dataclass
class Worker:
    index: int
    process: Any
    conn: Connection
    cancel_flags: list[Any]
    jobs: list[str | None] = field(default_factory=list)  # the job in each slot
    deadlines: list[float | None] = field(default_factory=list)
    ready: bool = False
    # Above the pool's memory ceiling after a job: takes no more jobs, and is replaced once its last one ends.
    retiring: bool = False
    retired_at: float = 0.0
    finished: int = 0  # jobs it has ended

    def __post_init__(self) -> None:
        self.jobs = [None] * len(self.cancel_flags)
        self.deadlines = [None] * len(self.cancel_flags)

    def free_slot(self) -> int | None:
        return next((i for i, job in enumerate(self.jobs) if job is None), None)

    def slot_of(self, job_id: str) -> int | None:
        return next((i for i, job in enumerate(self.jobs) if job == job_id), None)

    @property
    def busy(self) -> bool:
        return any(job is not None for job in self.jobs)


# Gets what workers say, and the outcomes the pool reports on its own (Crashed, TimedOut).
Handler = Callable[[WorkerMessage], None]


class WorkerPool:
    def __init__(
        self,
        size: int,
        handler: Handler,
        *,
        job_timeout_s: float,
        slots: int = 1,
        max_rss_mb: float | None = None,
        warm: RunOptions | None = None,
        log_format: LogFormat | None = None,
    ) -> None:
        self.size = size
        self.log_format = log_format
        # What each new worker gets ready for before its first job (None: nothing).
        self.warm = warm
        self.slots = slots
        self.handler = handler
        self.job_timeout_s = job_timeout_s
        # A worker that still holds more than this after a job is replaced by a fresh one (None: never).
        self.max_rss_mb = max_rss_mb
        self.recycled = 0  # workers replaced for holding too much memory, since start
        self.workers: list[Worker] = []
        self._retired: list[Worker] = []  # told to stop, not yet gone
        self._stopping = threading.Event()
        self._pump: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.workers = [self._spawn(i) for i in range(self.size)]
        self._pump = threading.Thread(target=self._pump_loop, name="oldphoto-worker-pump", daemon=True)
        self._pump.start()

    def stop(self, timeout: float = 3.0) -> None:
        with self._lock:  # no worker is recycled (a new one started) once this is set
            self._stopping.set()
        for worker in self.workers:
            for flag in worker.cancel_flags:
                flag.set()
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        deadline = time.monotonic() + timeout
        for worker in [*self.workers, *list(self._retired)]:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)
        if self._pump is not None:
            self._pump.join(2)
        for worker in self._retired:
            worker.conn.close()

    def idle(self) -> tuple[Worker, int] | None:
        """A ready worker with a free slot. A job's time limit must not run while its worker still starts."""
        with self._lock:
            for worker in self.workers:
                slot = worker.free_slot()
                if worker.ready and not worker.retiring and slot is not None and worker.process.is_alive():
                    return worker, slot
        return None

    def assign(self, place: tuple[Worker, int], item: WorkItem) -> None:
        worker, slot = place
        with self._lock:
            successor = self.workers[worker.index]
            if successor is not worker:
                # Replaced since `idle` chose it (recycled right after its last job): the fresh worker takes the job
                # and starts it once it has started itself.
                free = successor.free_slot()
                assert free is not None, "a worker that has just been started has every slot free"
                worker, slot = successor, free
            worker.cancel_flags[slot].clear()  # cleared here, before the job exists, so no cancel can be lost
            worker.jobs[slot] = item.job_id
            # A job's time limit runs from when its worker is ready (set on `Ready` for one still starting).
            worker.deadlines[slot] = time.monotonic() + self.job_timeout_s if worker.ready else None
            worker.conn.send((slot, item))

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            for worker in self.workers:
                slot = worker.slot_of(job_id)
                if slot is not None:
                    worker.cancel_flags[slot].set()
                    return True
        return False

    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.ready and w.process.is_alive())

    def running(self) -> dict[str, int]:
        return {job: w.process.pid for w in self.workers for job in w.jobs if job is not None}

    def _spawn(self, index: int) -> Worker:
        parent, child = CONTEXT.Pipe(duplex=True)
        flags = [CONTEXT.Event() for _ in range(self.slots)]
        args = (child, flags, self.size, os.getpid(), self.warm, self.log_format)
        process = CONTEXT.Process(target=_worker_main, args=args, name=f"oldphoto-worker-{index}", daemon=True)
        process.start()
        child.close()
        return Worker(index=index, process=process, conn=parent, cancel_flags=flags)

    def _pump_loop(self) -> None:
        while not self._stopping.is_set():
            conns = {w.conn: w for w in self.workers}
            for conn in wait(list(conns), timeout=0.2):
                self._receive(conns[conn])  # type: ignore[index]  # wait() returns some of the connections it was given
            self._check_health()

    def _receive(self, worker: Worker) -> None:
        try:
            message: FromWorker = worker.conn.recv()
        except (EOFError, OSError):
            return  # the process is gone; _check_health reports it
        match message:
            case Ready():
                with self._lock:
                    worker.ready = True
                    now = time.monotonic()
                    for slot, job in enumerate(worker.jobs):
                        if job is not None and worker.deadlines[slot] is None:
                            worker.deadlines[slot] = now + self.job_timeout_s
            case Done(job_id) | Failed(job_id) | Cancelled(job_id):
                self._free(worker, job_id)
            case Noted() | Previewed() | Measured():
                pass
            case Released(rss_bytes):
                self._after_job(worker, rss_bytes)
                return  # the pool's own business
            case _:
                assert_never(message)
        self.handler(message)

    def _free(self, worker: Worker, job_id: str) -> None:
        with self._lock:
            slot = worker.slot_of(job_id)
            if slot is not None:
                worker.jobs[slot] = None
                worker.deadlines[slot] = None
                worker.finished += 1

    def _after_job(self, worker: Worker, rss_bytes: int) -> None:
        """A worker holding more than the ceiling after a job takes no more; it is replaced once it has none."""
        if self.max_rss_mb is None:
            return
        with self._lock:
            if self._stopping.is_set() or self.workers[worker.index] is not worker:
                return
            if not worker.retiring:
                if rss_bytes <= self.max_rss_mb * MB:
                    return
                worker.retiring = True
                if worker.busy:  # jobs of other slots, or one handed to it since this job's outcome
                    log.info(
                        "worker %s (pid %s) holds %.0f MB after a job, over the ceiling of %.0f MB: it takes no more jobs "
                        "and is replaced once those it runs have ended",
                        worker.index, worker.process.pid, rss_bytes / MB, self.max_rss_mb,
                    )
            if worker.busy:
                return  # the `Released` after its last job comes back here
            worker.retired_at = time.monotonic()
            self._retired.append(worker)
            self.workers[worker.index] = self._spawn(worker.index)
            self.recycled += 1
        with contextlib.suppress(OSError, ValueError):
            worker.conn.send(None)  # between jobs: it stops at once
        log.warning(
            "worker %s (pid %s) recycled: it held %.0f MB after %d job(s) (ceiling %.0f MB); a fresh worker takes its place%s",
            worker.index, worker.process.pid, rss_bytes / MB, worker.finished, self.max_rss_mb,
            # A fresh worker over the ceiling after one job will be over it after the next one too: say so.
            "; the ceiling may be below what one job's models need (OLDPHOTO_WORKER_MAX_RSS_MB)" if worker.finished <= 1 else "",
        )

    def _reap_retired(self) -> None:
        now = time.monotonic()
        for worker in list(self._retired):
            if worker.process.is_alive() and now - worker.retired_at > RETIRE_GRACE_S:
                waited = now - worker.retired_at
                log.warning("recycled worker %s (pid %s) did not stop within %.0f s: killed", worker.index, worker.process.pid, waited)
                worker.process.kill()
            if not worker.process.is_alive():
                worker.process.join(1)
                worker.conn.close()
                self._retired.remove(worker)

    def _check_health(self) -> None:
        if self._stopping.is_set():
            return
        self._reap_retired()
        now = time.monotonic()
        for i, worker in enumerate(self.workers):
            jobs = [job for job in worker.jobs if job is not None]
            if not worker.process.is_alive():
                self._replace(i, [exited(job, worker.process.exitcode) for job in jobs])
            elif any(d is not None and now > d for d in worker.deadlines):
                late = {job for job, d in zip(worker.jobs, worker.deadlines) if d is not None and now > d}
                worker.process.kill()
                worker.process.join(2)
                # Jobs sharing the process with a stuck one go down with it: told so in words of their own, not
                # blamed for the time limit and not called a crash.
                self._replace(i, [TimedOut(job) if job in late else restarted_beside(job) for job in jobs])

    def _replace(self, index: int, outcomes: list[Crashed | TimedOut]) -> None:
        """A fresh worker in place of one that ended; then the outcomes of the jobs it took with it."""
        old = self.workers[index]
        log.warning("worker %s (pid %s) ended with exit code %s", index, old.process.pid, old.process.exitcode)
        old.conn.close()
        with self._lock:
            self.workers[index] = self._spawn(index)
        for outcome in outcomes:
            self.handler(outcome)
