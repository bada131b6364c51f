"""In-memory tallies of what this process saw of its jobs, for /metrics: stage durations, time waited in the queue,
jobs by final status.

Kept by whoever records a job's events (`Recorder`, on its recording thread) and by the service that withdraws a
queued job (on its store writer thread); read at scrape time. Nothing here touches the disk: an observation is a
few additions under a lock, so the threads that record never wait on one another for long, and the event loop never
waits at all (it only reads).

Who counts what: embedded (`oldphoto serve` alone), the web process records every job and exports everything. In
scale-out, a job's stages, its queue wait and its end are recorded by the worker node that ran it; a web node counts
only the queued jobs it withdrew itself (cancelled before they started), so its /metrics holds no stage or queue-wait
observations. What a web node doesn't see it doesn't count; a worker node exports its own on a port of its own
(`OLDPHOTO_WORKER_METRICS_PORT`, distributed/metrics.py). `telemetry_families` is the Prometheus form, for both.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

# Stages last from a fraction of a second (a warm sharpen) to minutes (a large upscale on CPU, a cold model load).
STAGE_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# A queue wait is zero when a worker is free, and minutes behind a long queue.
QUEUE_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass
class Histogram:
    """Counts per bucket (not cumulative; the last one is above every bound) and their sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
        self.counts[index] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus' buckets: (upper bound, count at or below it), +Inf last."""
        running, buckets = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts), self.total)


@dataclass(frozen=True)
class TelemetryView:
    """One consistent copy, for a scrape."""

    stages: dict[tuple[str, str], Histogram]  # (stage, node type) -> seconds
    queue_wait: Histogram
    finished: dict[str, int]  # final status -> jobs


class JobTelemetry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[tuple[str, str], Histogram] = {}
        self._queue_wait = Histogram(QUEUE_BUCKETS_S)
        self._finished: Counter[str] = Counter()

    def stage_ended(self, stage: str, node_type: str, seconds: float) -> None:
        with self._lock:
            histogram = self._stages.setdefault((stage, node_type), Histogram(STAGE_BUCKETS_S))
            histogram.observe(seconds)

    def started(self, waited_s: float) -> None:
        with self._lock:
            self._queue_wait.observe(max(0.0, waited_s))  # the admitting node's clock may run ahead of this one's

    def finished(self, status: str) -> None:
        with self._lock:
            self._finished[status] += 1

    def view(self) -> TelemetryView:
        with self._lock:
            stages = {key: h.copy() for key, h in self._stages.items()}
            return TelemetryView(stages, self._queue_wait.copy(), dict(self._finished))


def telemetry_families(view: TelemetryView) -> Iterator[Metric]:
    stages = HistogramMetricFamily(
        "oldphoto_stage_duration_seconds",
        "How long a job's stage took, from the event that began it to the next (the last one's `<stage>+save`: to complete).",
        labels=["stage", "node_type"],
    )
    for (stage, node_type), histogram in sorted(view.stages.items()):
        stages.add_metric([stage, node_type], histogram.cumulative(), histogram.total)
    yield stages
    wait = view.queue_wait
    yield HistogramMetricFamily(
        "oldphoto_queue_wait_seconds", "How long a job waited from admission to its start.", buckets=wait.cumulative(), sum_value=wait.total
    )
    finished = CounterMetricFamily("oldphoto_jobs_finished", "Jobs that ended, by final status.", labels=["status"])
    for status, count in sorted(view.finished.items()):
        finished.add_metric([status], count)
    yield finished
