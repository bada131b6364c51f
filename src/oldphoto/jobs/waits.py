"""How long a waiting job is expected to wait: its place, the expected seconds of the jobs ahead, the worker slots.

The jobs ahead are handed out in fair order to whichever slot frees first (list scheduling): the running jobs free
their slots when their expected seconds are over (a job past its estimate is taken to end now), free slots at once,
and each waiting job takes the earliest slot, which frees again after that job's expected seconds. A job's wait is
when its slot frees. One pass works out every waiting job's wait in O(waiting x log slots).
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.store import Job


def expected_waits(
    order: Iterable[str], seconds: Mapping[str, float], running_left: Iterable[float], slots: int
) -> tuple[dict[str, float], list[float]]:
    """(each waiting job's wait, the slots' free times after them all); `order` is the waiting jobs in fair order."""
    free = sorted(max(0.0, left) for left in running_left)[:slots]
    free += [0.0] * (slots - len(free))
    heapq.heapify(free)
    waits = {}
    for job_id in order:
        start = heapq.heappop(free)
        waits[job_id] = start
        heapq.heappush(free, start + seconds.get(job_id, 0.0))
    return waits, sorted(free)


WaitAt = Callable[[int, int], float | None]  # (place, jobs waiting) -> expected wait


def no_wait(place: int, waiting: int) -> float | None:
    return None


class Waits:
    """The last pass's waits, and each active job's expected seconds (worked out once per job)."""

    def __init__(self, job_seconds: Callable[[Job], float]) -> None:
        self.job_seconds = job_seconds
        self.seconds: dict[str, float] = {}
        self.waits: dict[str, float] = {}
        self._in_order: list[float] = []  # the waits sorted once per pass: admissions read them, many per pass
        self._after_all: list[float] = []
        self._lock = threading.Lock()

    def update(self, positions: Mapping[str, int], active: Iterable[Job], slots: int, now: datetime) -> dict[str, float]:
        """On a reader thread: every waiting job's wait, from the queue's order and the active jobs."""
        jobs = list(active)
        seconds = {job.id: self.seconds.get(job.id) or self.job_seconds(job) for job in jobs}
        running = [seconds[job.id] - _since(job.started_at, now) for job in jobs if job.status == JobStatus.RUNNING]
        order = sorted(positions, key=positions.__getitem__)
        waits, after_all = expected_waits(order, seconds, running, slots) if slots > 0 else ({}, [])
        with self._lock:
            self.seconds, self.waits, self._after_all = seconds, {k: round(v, 1) for k, v in waits.items()}, after_all
            self._in_order = sorted(self.waits.values())
        return self.waits

    def of(self, job_id: str) -> float | None:
        return self.waits.get(job_id)

    def at_place(self, place: int, waiting: int) -> float | None:
        """A job just admitted at `place` of `waiting`: its wait as of the last pass (before it came)."""
        with self._lock:
            after_all, seconds, known = self._after_all, self.seconds, self._in_order
            if not after_all:
                return None
        if place <= len(known):
            return known[place - 1]
        # Jobs admitted since the last pass, between the known ones and this one: the typical job's seconds each.
        typical = sum(seconds.values()) / len(seconds) if seconds else 0.0
        free = list(after_all)
        heapq.heapify(free)
        for _ in range(min(place - 1 - len(known), waiting)):
            heapq.heappush(free, heapq.heappop(free) + typical)
        return round(free[0], 1)


def _since(moment: datetime | None, now: datetime) -> float:
    return 0.0 if moment is None else (now - moment).total_seconds()
