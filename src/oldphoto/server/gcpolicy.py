"""Keeping the garbage collector's pauses off the event loop's back.

A full collection walks every object the collector tracks. With 10,000 sockets open, the web process holds millions
of them, almost all alive for as long as their connection: full collections took 0.9-1.8 s each and collected next
to nothing (docs/benchmarks.md, queue storm), and the loop stood still for each. Frozen objects are never walked:
everything made while starting is frozen once, and what has lived `freeze_every_s` since is frozen in turn, so a
collection walks only what is younger than that.

Frozen objects are still freed by reference counting when nothing refers to them; only a reference cycle that
became garbage after its freeze waits, until the sweep every `sweep_every_s` unfreezes everything and collects once
(one pause per sweep instead of several a minute). A closed WebSocket leaves about 40 such objects: at 100
connections a second, a sweep every 120 s bounds them to about half a million. tests/server/test_hygiene.py checks
that the sweep takes them (75,813 objects stayed behind 2,000 connections without it).

Measured at 10,000 sockets (docs/benchmarks.md, queue storm): full collections of 0.9-1.8 s without the policy,
at most 0.27 s with a freeze every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time


class GcPolicy:
    def __init__(self, freeze_every_s: float = 1.0, sweep_every_s: float = 120.0) -> None:
        self.freeze_every_s = freeze_every_s
        self.sweep_every_s = sweep_every_s
        self.sweeps = 0
        self.alive_at_sweep = 0  # objects the collector tracked after the last sweep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        gc.collect()  # what starting left behind, once, before the first request
        gc.freeze()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        gc.unfreeze()

    def sweep(self) -> None:
        """Unfreeze, collect every generation once, freeze what is left, and count it."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.sweeps += 1
        # Counting walks every frozen object (300 ms at 10,000 sockets): done here, in a pause that walks them all
        # anyway, and never when /metrics is scraped (it did, and was the loop's longest stall in the queue storm).
        self.alive_at_sweep = gc.get_freeze_count()

    async def _run(self) -> None:
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(self.freeze_every_s)
            if time.monotonic() - last_sweep >= self.sweep_every_s:
                self.sweep()
                last_sweep = time.monotonic()
            else:
                gc.freeze()  # O(1): the young generations join the frozen ones
