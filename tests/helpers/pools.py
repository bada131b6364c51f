"""A real WorkerPool (spawned worker processes, as the service runs them) whose messages land in a queue a test reads."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

from oldphoto.engine import RunOptions
from oldphoto.jobs.messages import WorkerMessage
from oldphoto.jobs.work import WorkItem
from oldphoto.jobs.workers import WorkerPool
from tests.helpers.images import png_bytes


class Pool:
    """One worker (unless `size` says otherwise); `pool_options` go to WorkerPool (slots, max_rss_mb, ...)."""

    def __init__(self, tmp_path: Path, *, size: int = 1, job_timeout_s: float = 60, **pool_options: Any) -> None:
        self.tmp_path = tmp_path
        self.messages: queue.Queue[WorkerMessage] = queue.Queue()
        self.pool = WorkerPool(size, self.on_message, job_timeout_s=job_timeout_s, **pool_options)
        self.photo = tmp_path / "photo.png"
        self.photo.write_bytes(png_bytes(32, 32))

    def on_message(self, message: WorkerMessage) -> None:
        """On the pool's thread, as an owner hears it; a test may wrap it."""
        self.messages.put(message)

    def next(self, timeout: float = 60) -> WorkerMessage:
        return self.messages.get(timeout=timeout)

    def until(self, kind: type, timeout: float = 60) -> tuple[list[WorkerMessage], WorkerMessage]:
        """Messages up to the first of `kind`, and that one."""
        before: list[WorkerMessage] = []
        deadline = time.monotonic() + timeout
        while not isinstance(message := self.next(max(0.1, deadline - time.monotonic())), kind):
            before.append(message)
        return before, message

    def item(self, job_id: str, workflow: str, options: RunOptions | None = None, photo: Path | None = None) -> WorkItem:
        photo = photo or self.photo
        return WorkItem(job_id, str(photo), str(self.tmp_path / f"{job_id}.png"), workflow, options or RunOptions(), 40_000_000)

    def submit(self, job_id: str, workflow: str, options: RunOptions | None = None, photo: Path | None = None) -> None:
        deadline = time.monotonic() + 60
        while (place := self.pool.idle()) is None:
            assert time.monotonic() < deadline, "no worker became ready"
            time.sleep(0.05)
        self.pool.assign(place, self.item(job_id, workflow, options, photo))


def start(pools: list[Pool], tmp_path: Path, **kwargs: Any) -> Pool:
    pool = Pool(tmp_path, **kwargs)
    pool.pool.start()
    pools.append(pool)
    return pool
