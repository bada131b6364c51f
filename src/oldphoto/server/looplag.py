"""How late the event loop runs what is due: the web process's own measure of whether anything blocks it.

A task asks to wake every `interval_s`; how much later than asked it wakes is the time the loop was busy with
something else. Exported on /metrics as a histogram and a maximum.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLag:
    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.counts = [0] * (len(BUCKETS_S) + 1)  # the last one: above every bucket
        self.total_s = 0.0
        self.samples = 0
        self.max_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._probe())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def observe(self, lag_s: float) -> None:
        index = next((i for i, bound in enumerate(BUCKETS_S) if lag_s <= bound), len(BUCKETS_S))
        self.counts[index] += 1
        self.total_s += lag_s
        self.samples += 1
        self.max_s = max(self.max_s, lag_s)

    def collect(self) -> Iterator[Metric]:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, BUCKETS_S), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "oldphoto_loop_lag_seconds",
            "How late the web process's event loop ran a task that was due.",
            buckets=buckets,
            sum_value=self.total_s,
        )
        yield GaugeMetricFamily("oldphoto_loop_lag_max_seconds", "The longest event-loop lag seen since start.", value=self.max_s)

    async def _probe(self) -> None:
        while True:
            due = time.perf_counter() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.observe(max(0.0, time.perf_counter() - due))
