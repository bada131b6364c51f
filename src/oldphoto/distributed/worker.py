"""`oldphoto worker`: takes jobs from the shared fair queue, runs them in this machine's worker processes (the same
`WorkerPool` as embedded mode: crashes and time limits handled the same way), records what they say in the shared
store and publishes it on Redis; a cancel published by any web node reaches the job wherever it runs.

One thread does all the recording (the pool's and the cancel listener's messages are handed to it), so a job's
notes are recorded in the order its worker sent them.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import assert_never

import redis

from oldphoto.distributed.events import DEFAULT_PREFIX, RedisPublisher, cancel_channel
from oldphoto.imaging import write_atomic
from oldphoto.jobs import querymaps
from oldphoto.jobs.durations import Durations
from oldphoto.jobs.leases import Leases
from oldphoto.jobs.messages import (
    Cancelled,
    CancelRequest,
    Crashed,
    Done,
    Failed,
    JobMessage,
    Measured,
    NodeMessage,
    Noted,
    Previewed,
    Ready,
    TimedOut,
)
from oldphoto.jobs.recorder import Recorder
from oldphoto.jobs.service import ServiceConfig
from oldphoto.jobs.sharedqueue import SharedQueue
from oldphoto.jobs.shutdown import Shutdown
from oldphoto.jobs.store import JobStore
from oldphoto.jobs.workers import WorkerPool

log = logging.getLogger(__name__)

# How often an idle node looks at the queue again (a job admitted meanwhile waits at most this long).
POLL_S = 0.5


def request_cancel(client: redis.Redis, job_id: str, prefix: str = DEFAULT_PREFIX) -> None:
    """What a web node does to cancel a running job, wherever it runs."""
    client.publish(cancel_channel(prefix), job_id)


class WorkerNode:
    def __init__(
        self,
        config: ServiceConfig,
        store: JobStore,
        broker_url: str,
        prefix: str = DEFAULT_PREFIX,
        lease_s: float = 30.0,
        *,
        max_rss_mb: float | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.broker_url = broker_url
        self.prefix = prefix
        self.lease_s = lease_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leases = Leases(store)
        self._next_renewal = 0.0
        self.publisher = RedisPublisher(broker_url, prefix)
        self.queue = SharedQueue(store)
        self.durations = Durations(store, config.run_options)
        self.recorder = Recorder(
            store, self.publisher.publish, config.results_dir, config.job_timeout_s, self.durations, tell=self.publisher.tell
        )
        self.inbox: queue.SimpleQueue[NodeMessage] = queue.SimpleQueue()
        self.draining = threading.Event()  # the shutdown's, once `run` has it
        self.pool = WorkerPool(
            config.workers,
            self.inbox.put,
            job_timeout_s=config.job_timeout_s,
            slots=config.jobs_per_worker,
            max_rss_mb=max_rss_mb,
            warm=config.run_options,
            log_format=config.log_format,
        )

    def run(self, shutdown: Shutdown) -> None:
        """Until the stop is due (jobs/shutdown.py): while draining, no new job starts and the running ones finish."""
        stop = shutdown.stopped
        self.draining = shutdown.draining
        self.pool.start()
        listener = threading.Thread(target=self._listen_for_cancels, args=(stop,), name="oldphoto-cancels", daemon=True)
        listener.start()
        try:
            while not shutdown.due(len(self.recorder.running)):
                self._keep_leases()
                if not shutdown.draining.is_set():
                    self._start_what_fits()
                try:
                    message = self.inbox.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                match message:
                    case CancelRequest(job_id):
                        self.pool.cancel(job_id)
                    case Ready():
                        pass  # the next turn of the loop gives it work
                    case Noted() | Previewed() | Measured() | Done() | Failed() | Cancelled() | Crashed() | TimedOut():
                        self._on_message(message)
                    case _:
                        assert_never(message)
        finally:
            self.pool.stop()
            self._give_back_unfinished()
            self.leases.node_gone(self.holder)
            self.publisher.close()

    def _on_message(self, message: JobMessage) -> None:
        job_id = message.job_id
        if isinstance(message, Done) and job_id in self.recorder.running:
            # The result goes into the database before `complete` is recorded: a client fetches it right after.
            try:
                self.store.put_blob(job_id, "result", self._result(job_id).read_bytes())
                maps = querymaps.path_for(self._result(job_id))
                if maps.is_file():  # a colorize job's colour-query maps travel the same way
                    self.store.put_blob(job_id, querymaps.KIND, maps.read_bytes())
            except OSError as exc:
                message = Failed(job_id, "internal_error", f"The result could not be read back: {exc}")
        if self.recorder.on_message(message):
            self.leases.release(job_id)
            for local in (self._input(job_id), self._result(job_id), querymaps.path_for(self._result(job_id))):
                local.unlink(missing_ok=True)

    def _input(self, job_id: str) -> Path:
        return self.config.inputs_dir / job_id

    def _result(self, job_id: str) -> Path:
        return self.config.results_dir / f"{job_id}.png"

    def _local_input(self, job_id: str, recorded_path: str) -> str:
        """The photo from the database onto this machine (a job admitted with a shared data dir has none there)."""
        data = self.store.get_blob(job_id, "input")
        if data is None:
            return recorded_path
        write_atomic(self._input(job_id), data)
        return str(self._input(job_id))

    def _start_what_fits(self) -> None:
        while (place := self.pool.idle()) is not None:
            job_id = self.queue.start_next(self.holder)
            if job_id is None:
                return
            self.publisher.queue_moved(time.time())  # every web node tells its followers their new places
            job = self.store.get(job_id)
            if job is None:
                continue
            self.recorder.started(job_id, job.progress, job.created_at.timestamp())
            expected = self.durations.expected(self.durations.model_of(job))
            item = self.config.work_item(job_id, self._local_input(job_id, job.input_path), job.workflow, job.model, expected)
            self.pool.assign(place, item)


    def _keep_leases(self) -> None:
        """Every lease_s / 6: renew this node's leases (and hear cancels written on them), take back stale ones."""
        now = time.monotonic()
        if now < self._next_renewal:
            return
        self._next_renewal = now + self.lease_s / 6
        slots = 0 if self.draining.is_set() else self.pool.size * self.pool.slots  # a draining node takes no more jobs
        self.leases.node_seen(self.holder, slots, len(self.recorder.running), self.lease_s)
        for job_id in self.leases.renew(self.holder):
            self.pool.cancel(job_id)
        for job_id, lane, attempts in self.leases.stale(self.lease_s):
            if not self.leases.take_back(job_id, self.lease_s):
                continue  # another node took it first
            if attempts >= 1:
                self.recorder.fail(job_id, "interrupted", "The machine running this job stopped twice while running it.")
            elif self._put_back(job_id, lane, attempts=attempts + 1):
                log.warning("job %s: its worker node stopped renewing its lease; back in the queue", job_id, extra={"job_id": job_id})

    def _give_back_unfinished(self) -> None:
        """A node that stops hands its running jobs back to the queue for another node (no retry spent)."""
        for job_id in list(self.recorder.running):
            job = self.store.get(job_id)
            if job is not None:
                self._put_back(job_id, job.lane)

    def _put_back(self, job_id: str, lane: str, **fields: object) -> bool:
        """A running job back in line, its place recorded and told; False when it is not running any more."""
        told = self.queue.requeue(job_id, lane, **fields)
        if told is None:
            return False
        self.publisher.publish(told)
        self.publisher.queue_moved(time.time())
        return True

    def _listen_for_cancels(self, stop: threading.Event) -> None:
        client = redis.Redis.from_url(self.broker_url, client_name=f"{self.prefix}:worker")
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        while not stop.is_set():
            try:
                if not pubsub.subscribed:
                    pubsub.subscribe(cancel_channel(self.prefix))
                message = pubsub.get_message(timeout=POLL_S)
            except (redis.RedisError, OSError) as exc:
                log.warning("cancel listener: %s; retrying", exc)
                stop.wait(POLL_S)
                pubsub.close()  # its connection is broken: a fresh one subscribes again
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                continue
            if message and message.get("type") == "message":
                data = message["data"]
                self.inbox.put(CancelRequest(data.decode() if isinstance(data, bytes) else str(data)))
        pubsub.close()
        client.close()
