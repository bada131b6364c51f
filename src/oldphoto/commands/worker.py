from __future__ import annotations

import argparse
import logging.config
import signal
import sys

from oldphoto.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from oldphoto.jobs.shutdown import Shutdown
from oldphoto.settings import Settings


def worker(args: argparse.Namespace) -> int:
    given = {"data_dir": args.data_dir, "worker_metrics_port": args.metrics_port}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    if not settings.scale_out:
        print("oldphoto worker needs OLDPHOTO_BROKER_URL and OLDPHOTO_DATABASE_URL (see docs/scaleout.md).", file=sys.stderr)
        return EXIT_USAGE
    from oldphoto import logs
    from oldphoto.commands.db import store_ready
    from oldphoto.distributed.worker import WorkerNode
    from oldphoto.jobs.store import JobStore
    from oldphoto.wiring import service_config, worker_max_rss_mb

    logging.config.dictConfig(logs.config(settings.log_format))
    # The first SIGTERM drains (running jobs may finish within the grace), the second stops at once.
    shutdown = Shutdown(settings.drain_grace_s)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: shutdown.signal())
    if not store_ready(settings.store_url, "worker"):
        return EXIT_FAILED
    store = JobStore(settings.store_url)
    config = service_config(settings)
    config.inputs_dir.mkdir(parents=True, exist_ok=True)
    config.results_dir.mkdir(parents=True, exist_ok=True)
    exporter = None
    try:
        node = WorkerNode(
            config, store, settings.broker_url or "", settings.broker_prefix, settings.lease_s, max_rss_mb=worker_max_rss_mb(settings)
        )
        if settings.worker_metrics_port is not None:
            from oldphoto.distributed.metrics import serve_metrics

            exporter = serve_metrics(node, settings.worker_metrics_port, settings.worker_metrics_host)
            host, port = exporter.server_address[:2]
            logging.getLogger("oldphoto.worker").info("metrics on http://%s:%s/metrics", host, port)
        node.run(shutdown)
    finally:
        if exporter is not None:
            exporter.shutdown()
        store.close()
    return EXIT_OK
