"""A worker node's own /metrics (`OLDPHOTO_WORKER_METRICS_PORT`): in scale-out the node that runs a job records its
stages, its queue wait and its end (jobs/telemetry.py), so those histograms and counters are scraped here, not from
a web node. Plain HTTP on a thread of the node (prometheus_client's server): no event loop to keep free.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from oldphoto.jobs.telemetry import telemetry_families

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from oldphoto.distributed.worker import WorkerNode


class NodeCollector:
    def __init__(self, node: WorkerNode) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        pool = self.node.pool
        yield GaugeMetricFamily("oldphoto_jobs_running", "Jobs running on this worker node now.", value=len(pool.running()))
        yield GaugeMetricFamily("oldphoto_workers_alive", "Worker job slots alive on this node.", value=pool.ready_count() * pool.slots)
        yield CounterMetricFamily(
            "oldphoto_workers_recycled", "Worker processes replaced for holding too much memory after a job.", value=pool.recycled
        )
        yield from telemetry_families(self.node.recorder.telemetry.view())


def serve_metrics(node: WorkerNode, port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Start serving the node's metrics on `host:port` (0: a free port, read back from the server); `shutdown()` ends it."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(NodeCollector(node))
    server, _ = start_http_server(port, host, registry)
    return server
