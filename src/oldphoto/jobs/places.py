"""Queue places as live state, not as log entries.

A move of the queue (a job admitted, started, cancelled) used to write a `queued` event for every waiting job: one
advance cost O(waiting) durable rows and every other request waited behind them. Now the log records a job's place
once, when it is admitted (and again only when it is put back in line); the places after that are live: `Places`
marks the queue as moved, and at most once per `interval_s` reads every place in one pass (off the event loop) and
tells the followers on this process whose job moved, in slices of a few milliseconds that let the loop breathe. A follower that
subscribes later gets the current place at once (server/follow.py).

Each event's `ts` is when the queue first moved since the last broadcast, so a reader measures the whole delay.
When no worker is running anywhere, the places say so, instead of leaving people waiting in silence. Each place
carries the job's expected wait (`wait_s`, jobs/waits.py), worked out in the same pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from oldphoto.jobs.bus import Bus
from oldphoto.protocol import LivePlace

PositionsReader = Callable[[], Awaitable[dict[str, int]]]
WaitsReader = Callable[[dict[str, int]], Awaitable[dict[str, float]]]  # positions -> each waiting job's wait
WorkersProbe = Callable[[], Awaitable[bool]]


class Places:
    def __init__(
        self,
        bus: Bus,
        read_positions: PositionsReader,
        workers_running: WorkersProbe,
        *,
        interval_s: float = 0.1,
        workers_check_s: float = 2.0,
        slice_s: float = 0.002,
        read_waits: WaitsReader | None = None,
    ) -> None:
        self.read_waits = read_waits
        self.waits: dict[str, float] = {}
        self.bus = bus
        self.read_positions = read_positions
        self.workers_running = workers_running
        self.interval_s = interval_s
        self.workers_check_s = workers_check_s
        self.slice_s = slice_s
        self.current: dict[str, int] = {}
        self.no_worker = False
        self.broadcasts = 0
        self._moved_at: float | None = None
        self._retell = False  # every followed job hears its place in the next pass, changed or not
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.moved()
        self._tasks = [asyncio.create_task(self._broadcast_loop()), asyncio.create_task(self._watch_workers())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def moved(self, at: float | None = None) -> None:
        """The queue changed (here or on another node, at `at`): recompute the places soon."""
        at = time.time() if at is None else at
        self._moved_at = at if self._moved_at is None else min(self._moved_at, at)
        self._wake.set()

    def position(self, job_id: str) -> int | None:
        """The place as of the last pass: at most `interval_s` old."""
        return self.current.get(job_id)

    def event(self, job_id: str, position: int, at: float | None = None) -> LivePlace:
        """A live place; the follower stamps it with its own last seq and progress."""
        key = "queued.no_worker" if self.no_worker else "queued"
        return LivePlace(job_id, position, time.time() if at is None else at, message_key=key, wait_s=self.waits.get(job_id))

    async def _broadcast_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            started = time.perf_counter()
            moved_at, self._moved_at = self._moved_at, None
            before, current = ({} if self._retell else self.current), await self.read_positions()
            if self.read_waits is not None:
                self.waits = await self._read_waits(current)
            self.current = current
            self._retell = False
            await self._tell(before, moved_at)
            self.broadcasts += 1
            # Every move in the meantime is told in the next pass, at most `interval_s` after this one began: a pass
            # that took longer (10,000 readers) has coalesced enough, and the next begins at once.
            await asyncio.sleep(max(0.0, self.interval_s - (time.perf_counter() - started)))

    async def _read_waits(self, positions: dict[str, int]) -> dict[str, float]:
        assert self.read_waits is not None
        try:
            return await self.read_waits(positions)
        except Exception:  # a wait not worked out this pass leaves the places as they are, told without it
            return {}

    async def _tell(self, before: dict[str, int], moved_at: float | None) -> None:
        """Each followed job whose place changed hears it; the loop gets a turn every `slice_s` of this.

        A slice of time, not a count of readers: what one reader costs depends on its socket (a write that the
        kernel takes at once, or one that goes to a slow reader's outbox), and the loop's other work is owed a
        turn in time."""
        clock = time.perf_counter
        yield_at = clock() + self.slice_s
        for job_id in list(self.bus.followed_jobs()):
            position = self.current.get(job_id)
            if position is None or before.get(job_id) == position:
                continue
            self.bus.tell(self.event(job_id, position, moved_at))
            if clock() >= yield_at:
                await asyncio.sleep(0)
                yield_at = clock() + self.slice_s

    async def _watch_workers(self) -> None:
        while True:
            try:
                no_worker = not await self.workers_running()
            except Exception:  # a probe that fails says nothing new; the next one may
                no_worker = self.no_worker
            if no_worker != self.no_worker:
                self.no_worker = no_worker
                self._retell = True  # every waiting job hears the news with its place
                self.moved()
            await asyncio.sleep(self.workers_check_s)
