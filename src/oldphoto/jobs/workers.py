"""Worker processes: the models run here, never in the web process.

Each worker has its own pipe and one cancel flag per job slot, so a worker that dies (segfault, killed for
memory, `os._exit`) takes only its own jobs with it: the pool notices, reports the crash and starts a new worker in
its place. A worker runs one job at a time, or `slots` at once on threads when batching is on
(`OLDPHOTO_BATCH_MAX`), so that concurrent colorize jobs can share a forward pass.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, assert_never

from oldphoto.jobs.messages import (
    Cancelled,
    Crashed,
    Done,
    Failed,
    FromWorker,
    Noted,
    Ready,
    TimedOut,
    WorkerMessage,
    exited,
    restarted_beside,
)
from oldphoto.jobs.work import WorkItem
from oldphoto.lifeline import die_with_parent as _die_with_parent

log = logging.getLogger(__name__)
CONTEXT = mp.get_context("spawn")  # fork after torch or CUDA has started is unsafe


def _worker_main(conn: Connection, cancel_flags: list[Any], cores_shared_by: int, parent: int = 0) -> None:
    if parent:
        _die_with_parent(parent)
    from oldphoto.engine import CancelToken
    from oldphoto.jobs.work import execute
    from oldphoto.models.runtimes import configure_threads, threads_per_job

    # Workers share the cores: each gets its part, so jobs that run at once do not fight over the same ones.
    configure_threads(threads_per_job(cores_shared_by))
    lock = threading.Lock()

    def send(message: FromWorker) -> None:
        with lock:
            conn.send(message)

    def run(slot: int, item: WorkItem) -> None:
        execute(item, CancelToken(cancel_flags[slot]), send)

    send(Ready())
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

    def __post_init__(self) -> None:
        self.jobs = [None] * len(self.cancel_flags)
        self.deadlines = [None] * len(self.cancel_flags)

    def free_slot(self) -> int | None:
        return next((i for i, job in enumerate(self.jobs) if job is None), None)

    def slot_of(self, job_id: str) -> int | None:
        return next((i for i, job in enumerate(self.jobs) if job == job_id), None)


# Gets what workers say, and the outcomes the pool reports on its own (Crashed, TimedOut).
Handler = Callable[[WorkerMessage], None]


class WorkerPool:
    def __init__(self, size: int, handler: Handler, *, job_timeout_s: float, slots: int = 1) -> None:
        self.size = size
        self.slots = slots
        self.handler = handler
        self.job_timeout_s = job_timeout_s
        self.workers: list[Worker] = []
        self._stopping = threading.Event()
        self._pump: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.workers = [self._spawn(i) for i in range(self.size)]
        self._pump = threading.Thread(target=self._pump_loop, name="oldphoto-worker-pump", daemon=True)
        self._pump.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping.set()
        for worker in self.workers:
            for flag in worker.cancel_flags:
                flag.set()
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)
        if self._pump is not None:
            self._pump.join(2)

    def idle(self) -> tuple[Worker, int] | None:
        """A ready worker with a free slot. A job's time limit must not run while its worker still starts."""
        with self._lock:
            for worker in self.workers:
                slot = worker.free_slot()
                if worker.ready and slot is not None and worker.process.is_alive():
                    return worker, slot
        return None

    def assign(self, place: tuple[Worker, int], item: WorkItem) -> None:
        worker, slot = place
        with self._lock:
            worker.cancel_flags[slot].clear()  # cleared here, before the job exists, so no cancel can be lost
            worker.jobs[slot] = item.job_id
            worker.deadlines[slot] = time.monotonic() + self.job_timeout_s
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
        process = CONTEXT.Process(
            target=_worker_main, args=(child, flags, self.size, os.getpid()), name=f"oldphoto-worker-{index}", daemon=True
        )
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
                worker.ready = True
            case Done(job_id) | Failed(job_id) | Cancelled(job_id):
                self._free(worker, job_id)
            case Noted():
                pass
            case _:
                assert_never(message)
        self.handler(message)

    def _free(self, worker: Worker, job_id: str) -> None:
        with self._lock:
            slot = worker.slot_of(job_id)
            if slot is not None:
                worker.jobs[slot] = None
                worker.deadlines[slot] = None

    def _check_health(self) -> None:
        if self._stopping.is_set():
            return
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
