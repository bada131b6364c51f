"""`/metrics`: Prometheus text, read from the live state at scrape time (what needs the store is read off the loop
by the caller and handed in).

Who counts what (jobs/telemetry.py, server/outbox.py): the stage-duration and queue-wait histograms and the jobs
finished by status are tallied by whoever records a job's events: this process when embedded; in scale-out the
worker node that ran the job, so a web node exports only the queued jobs it cancelled itself. Events sent and
coalesced are this process's progress streams' (WebSocket and SSE), in both modes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from oldphoto.jobs.service import Capacity
from oldphoto.jobs.telemetry import TelemetryView, telemetry_families
from oldphoto.server.looplag import LoopLag
from oldphoto.server.outbox import EventTally


@dataclass(frozen=True)
class Snapshot:
    capacity: Capacity
    jobs_by_status: dict[str, int]
    connections: int
    subscriptions: int
    places_broadcasts: int
    gc_objects_at_sweep: int = 0
    # Worker processes replaced for holding too much memory after a job (this machine's workers; None in scale-out,
    # where each worker node logs its own).
    workers_recycled: int | None = None
    telemetry: TelemetryView | None = None
    events: EventTally | None = None


class ServiceCollector:
    def __init__(self, snapshot: Snapshot, lag: LoopLag) -> None:
        self.snapshot = snapshot
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        snap, capacity = self.snapshot, self.snapshot.capacity
        yield GaugeMetricFamily("oldphoto_queue_depth", "Jobs waiting for a worker.", value=capacity.queued)
        yield GaugeMetricFamily("oldphoto_jobs_running", "Jobs running now.", value=capacity.running)
        yield GaugeMetricFamily("oldphoto_workers_alive", "Worker job slots alive (here, or on all worker nodes).", value=capacity.workers)
        if capacity.worker_nodes is not None:
            yield GaugeMetricFamily("oldphoto_worker_nodes", "Worker nodes seen alive.", value=capacity.worker_nodes)
        if snap.workers_recycled is not None:
            help_text = "Worker processes replaced for holding too much memory after a job."
            yield CounterMetricFamily("oldphoto_workers_recycled", help_text, value=snap.workers_recycled)
        yield GaugeMetricFamily("oldphoto_degraded", "1 when no worker is ready to run a job.", value=int(capacity.degraded))
        yield GaugeMetricFamily("oldphoto_asyncio_tasks", "Tasks alive on the server's event loop.", value=len(asyncio.all_tasks()))
        yield GaugeMetricFamily("oldphoto_ws_connections", "Open progress WebSockets.", value=snap.connections)
        yield GaugeMetricFamily("oldphoto_subscriptions", "Job subscriptions (WebSocket and SSE).", value=snap.subscriptions)
        yield GaugeMetricFamily("oldphoto_place_broadcasts", "Passes that told followers their queue places.", value=snap.places_broadcasts)
        jobs = GaugeMetricFamily("oldphoto_jobs", "Jobs in the store by status.", labels=["status"])
        for status, count in snap.jobs_by_status.items():
            jobs.add_metric([status], count)
        yield jobs
        swept = snap.gc_objects_at_sweep
        yield GaugeMetricFamily("oldphoto_gc_objects_at_sweep", "Objects alive after the collector's last sweep.", value=swept)
        yield from self.lag.collect()
        if snap.telemetry is not None:
            yield from telemetry_families(snap.telemetry)
        if snap.events is not None:
            yield CounterMetricFamily("oldphoto_events_sent", "Job events handed to progress streams' writers.", value=snap.events.sent)
            help_text = "Job events replaced by a newer one, or dropped to bound a slow reader's queue."
            yield CounterMetricFamily("oldphoto_events_coalesced", help_text, value=snap.events.coalesced)


def render(snapshot: Snapshot, lag: LoopLag) -> bytes:
    registry = CollectorRegistry()
    registry.register(ServiceCollector(snapshot, lag))
    return generate_latest(registry)
