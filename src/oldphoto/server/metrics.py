"""`/metrics`: Prometheus text, read from the live state at scrape time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from oldphoto.jobs.service import JobService


class ServiceCollector:
    def __init__(self, service: JobService, connections: set) -> None:
        self.service = service
        self.connections = connections

    def collect(self) -> Iterator[Metric]:
        capacity = self.service.capacity()
        yield GaugeMetricFamily("oldphoto_queue_depth", "Jobs waiting for a worker.", value=capacity["queued"])
        yield GaugeMetricFamily("oldphoto_jobs_running", "Jobs running now.", value=capacity["running"])
        yield GaugeMetricFamily("oldphoto_workers_alive", "Worker processes alive (on this node).", value=capacity["workers"])
        yield GaugeMetricFamily("oldphoto_asyncio_tasks", "Tasks alive on the server's event loop.", value=len(asyncio.all_tasks()))
        yield GaugeMetricFamily("oldphoto_ws_connections", "Open progress WebSockets.", value=len(self.connections))
        yield GaugeMetricFamily(
            "oldphoto_subscriptions", "Job subscriptions (WebSocket and SSE).", value=self.service.bus.subscription_count
        )
        jobs = GaugeMetricFamily("oldphoto_jobs", "Jobs in the store by status.", labels=["status"])
        for status, count in self.service.store.count_by_status().items():
            jobs.add_metric([status], count)
        yield jobs


def render(service: JobService, connections: set) -> bytes:
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service, connections))
    return generate_latest(registry)
