"""Worker processes: the models run here, never in the web process.

Each worker has its own pipe and cancel flag, so a worker that dies (segfault, killed for memory, `os._exit`) takes
only its own job with it: the pool notices, reports the crash and starts a new worker in its place.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from oldphoto.jobs.work import Message, WorkItem

log = logging.getLogger(__name__)
CONTEXT = mp.get_context("spawn")  # fork after torch or CUDA has started is unsafe


def _worker_main(conn: Connection, cancel_flag: Any, jobs_at_once: int) -> None:
    from oldphoto.engine import CancelToken
    from oldphoto.jobs.work import execute
    from oldphoto.models.runtimes import configure_threads, threads_per_job

    # Workers share the cores: each gets its part, so jobs that run at once do not fight over the same ones.
    configure_threads(threads_per_job(jobs_at_once))

    cancel = CancelToken(cancel_flag)
    lock = threading.Lock()

    def send(message: Message) -> None:
        with lock:
            conn.send(message)

    send(("ready",))
    while True:
        try:
            item = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if item is None:
            return
        execute(item, cancel, send)


@dataclass
class Worker:
    index: int
    process: Any
    conn: Connection
    cancel_flag: Any
    job_id: str | None = None
    started: float = 0.0
    ready: bool = False
    deadline: float | None = None


# Outcomes the pool reports on its own: ("crashed", job_id, exitcode) and ("timeout", job_id).
Handler = Callable[[Message], None]


class WorkerPool:
    def __init__(self, size: int, handler: Handler, *, job_timeout_s: float) -> None:
        self.size = size
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
            worker.cancel_flag.set()
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)
        if self._pump is not None:
            self._pump.join(2)

    def idle(self) -> Worker | None:
        with self._lock:
            # Only a worker that said it is ready: a job's time limit must not run while its worker still starts.
            return next((w for w in self.workers if w.ready and w.job_id is None and w.process.is_alive()), None)

    def assign(self, worker: Worker, item: WorkItem) -> None:
        with self._lock:
            worker.cancel_flag.clear()  # cleared here, before the job exists, so no cancel can be lost
            worker.job_id = item.job_id
            worker.started = time.monotonic()
            worker.deadline = worker.started + self.job_timeout_s
            worker.conn.send(item)

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            for worker in self.workers:
                if worker.job_id == job_id:
                    worker.cancel_flag.set()
                    return True
        return False

    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.ready and w.process.is_alive())

    def running(self) -> dict[str, int]:
        return {w.job_id: w.process.pid for w in self.workers if w.job_id is not None}

    def _spawn(self, index: int) -> Worker:
        parent, child = CONTEXT.Pipe(duplex=True)
        flag = CONTEXT.Event()
        process = CONTEXT.Process(target=_worker_main, args=(child, flag, self.size), name=f"oldphoto-worker-{index}", daemon=True)
        process.start()
        child.close()
        return Worker(index=index, process=process, conn=parent, cancel_flag=flag)

    def _pump_loop(self) -> None:
        while not self._stopping.is_set():
            conns = {w.conn: w for w in self.workers}
            for conn in wait(list(conns), timeout=0.2):
                self._receive(conns[conn])
            self._check_health()

    def _receive(self, worker: Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            return  # the process is gone; _check_health reports it
        if message[0] == "ready":
            worker.ready = True
            self.handler(("ready", None))
            return
        if message[0] in ("done", "failed", "cancelled"):
            with self._lock:
                worker.job_id = None
                worker.deadline = None
        self.handler(message)

    def _check_health(self) -> None:
        if self._stopping.is_set():
            return
        for i, worker in enumerate(self.workers):
            if not worker.process.is_alive():
                self._replace(i, ("crashed", worker.job_id, worker.process.exitcode))
            elif worker.deadline is not None and time.monotonic() > worker.deadline:
                worker.process.kill()
                worker.process.join(2)
                self._replace(i, ("timeout", worker.job_id))

    def _replace(self, index: int, outcome: Message) -> None:
        old = self.workers[index]
        log.warning("worker %s (pid %s) ended: %s", index, old.process.pid, outcome)
        old.conn.close()
        with self._lock:
            self.workers[index] = self._spawn(index)
        if outcome[1] is not None:
            self.handler(outcome)

