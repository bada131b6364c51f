"""The job service of a web node in scale-out mode: it admits jobs into the shared store and fair queue, streams
every process's events through Redis, and runs nothing itself (`oldphoto worker` processes do).

What a client sees is the same as in embedded mode: the same admission limits (counted in the shared store), the
same `queued` places (announced by whichever node moves the queue), the same events, and cancel from any node.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from oldphoto.distributed.events import CANCEL, RedisBus
from oldphoto.imaging import write_atomic
from oldphoto.jobs.leases import Leases
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.service import JobService, ServiceConfig
from oldphoto.jobs.sharedqueue import SharedQueue
from oldphoto.jobs.store import Job, JobStore


class SharedJobService(JobService):
    def __init__(self, config: ServiceConfig, store: JobStore, broker_url: str, prefix: str, lease_s: float = 30.0) -> None:
        self.lease_s = lease_s
        self.redis_bus = RedisBus(broker_url, prefix)
        super().__init__(config, store, self.redis_bus)
        self.queue = SharedQueue(store, publish=self.redis_bus.publish)  # type: ignore[assignment]
        self.leases = Leases(store)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.redis_bus.start()
        self._janitor = asyncio.create_task(self._retention_loop())

    async def stop(self) -> None:
        self._stopping = True
        if self._janitor is not None:
            self._janitor.cancel()
        await self.redis_bus.stop()  # running jobs belong to their workers: nothing to hand back

    def position(self, job_id: str) -> int | None:
        return self.queue.positions().get(job_id)

    def capacity(self) -> dict[str, int]:
        """The whole deployment: worker nodes alive (and their job slots), the shared queue, every node's running jobs."""
        nodes, slots = self.leases.live_nodes(self.lease_s)
        running = self.store.count_by_status().get(JobStatus.RUNNING.value, 0)
        return {"workers": slots, "workers_ready": slots, "worker_nodes": nodes, "queued": len(self.queue), "running": running}

    def _enqueue(self, job_id: str, owner: str) -> int:
        # The photo goes into the database before the job can be taken: the worker may be on another machine.
        local = self.config.inputs_dir / job_id
        self.store.put_blob(job_id, "input", local.read_bytes())
        local.unlink(missing_ok=True)
        self.queue.push(job_id, owner)  # announces every place it changed, this job's first
        return self.queue.positions().get(job_id, 1)

    def result_path(self, job: Job) -> Path | None:
        """The result, fetched from the database into this node's results folder the first time it is asked for."""
        if job.status != JobStatus.SUCCEEDED:
            return None
        path = self.config.results_dir / f"{job.id}.png"
        if not path.is_file():
            data = self.store.get_blob(job.id, "result")
            if data is None:
                return None
            write_atomic(path, data)
        return path

    def _announce_positions(self) -> None:
        """The shared queue announces moves in the transaction that makes them."""

    def _dispatch(self) -> None:
        """Workers take jobs themselves."""

    def _cancel_running(self, job_id: str) -> None:
        self.leases.request_cancel(job_id)  # seen at the holder's next renewal even if the message below is lost
        self.redis_bus.send(CANCEL, job_id)

    def purge_expired(self) -> int:
        """Expired jobs, and this node's copies of results whose job another node has already purged."""
        purged = super().purge_expired()
        for copy in self.config.results_dir.glob("*.png"):
            if self.store.get(copy.stem) is None:
                copy.unlink(missing_ok=True)
        return purged

    def _local_files(self, job: Job) -> list[Path]:
        """Paths in the store are the worker's; on this node there is at most the result fetched for a client."""
        return [self.config.inputs_dir / job.id, self.config.results_dir / f"{job.id}.png"]
