"""The runner of a scale-out web node: jobs run on `oldphoto worker` nodes anywhere, reached through the shared
store and Redis. This node admits into the shared queue (the same `JobService` as embedded mode, wired with
`SharedQueue` and this runner), streams every process's events through its `RedisBus`, and runs nothing itself.

What a client sees is the same as in embedded mode: the same admission limits (counted in the shared store), the
same places (each node works them out when it hears the queue moved), the same events, and cancel from any node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oldphoto.distributed.events import CANCEL, RedisBus
from oldphoto.engine.context import RunOptions
from oldphoto.engine.graph import Workflow, parse_workflow
from oldphoto.imaging import write_atomic
from oldphoto.jobs import querymaps
from oldphoto.jobs.leases import Leases
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.service import Capacity, JobService, ServiceConfig
from oldphoto.jobs.store import Job, JobStore


class WorkerNodes:
    def __init__(self, config: ServiceConfig, store: JobStore, bus: RedisBus, lease_s: float = 30.0) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.lease_s = lease_s
        self.leases = Leases(store)
        self.service: JobService | None = None

    async def start(self, service: JobService) -> None:
        self.service = service
        self.bus.on_queue_moved = service.places.moved  # a move on any node: this node's places are worked out again
        await self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()  # running jobs belong to their workers: nothing to hand back

    def take_input(self, job_id: str, upload: Path) -> tuple[str, bytes | None]:
        """The photo goes into the database with the job: the worker that takes it may be on another machine."""
        return str(self.config.inputs_dir / job_id), upload.read_bytes()

    def queue_changed(self, at: float) -> None:
        assert self.service is not None
        self.service.call_on_loop(self.bus.queue_moved, at)

    def cancel_running(self, job_id: str) -> None:
        assert self.service is not None
        self.leases.request_cancel(job_id)  # seen at the holder's next renewal even if the message below is lost
        self.service.call_on_loop(self.bus.send, CANCEL, job_id)

    def backends(self) -> list[dict[str, Any]]:
        return []

    def admits(self, text: str, options: RunOptions) -> Workflow | None:
        return parse_workflow(text, options)

    def drain(self) -> None:
        """Nothing runs here; a web node's stop only closes its connections (clients reconnect to another node)."""

    def running_here(self) -> int:
        return 0

    def result_path(self, job: Job) -> Path | None:
        """The result, fetched from the database into this node's results folder the first time it is asked for."""
        path = self.config.results_dir / f"{job.id}.png"
        if not path.is_file():
            data = self.store.get_blob(job.id, "result")
            if data is None:
                return None
            write_atomic(path, data)
        return path

    def query_maps_path(self, job: Job) -> Path | None:
        """The colour-query maps, fetched from the database as the result is (the worker node put them there)."""
        path = querymaps.path_for(self.config.results_dir / f"{job.id}.png")
        if not path.is_file():
            data = self.store.get_blob(job.id, querymaps.KIND)
            if data is None:
                return None
            write_atomic(path, data)
        return path

    def capacity(self, queued: int) -> Capacity:
        """The whole deployment: worker nodes alive (and their job slots), the shared queue, every node's running jobs."""
        nodes, slots = self.leases.live_nodes(self.lease_s)
        running = self.store.count_by_status().get(JobStatus.RUNNING.value, 0)
        return Capacity(workers=slots, workers_ready=slots, queued=queued, running=running, worker_nodes=nodes)

    def local_files(self, job: Job) -> list[Path]:
        """Paths in the store are the worker's; on this node there is at most the result fetched for a client."""
        result = self.config.results_dir / f"{job.id}.png"
        return [self.config.inputs_dir / job.id, result, querymaps.path_for(result)]

