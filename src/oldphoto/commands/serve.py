from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from types import FrameType

import uvicorn

from oldphoto import logs
from oldphoto.cli import EXIT_FAILED, EXIT_OK
from oldphoto.commands.db import store_ready
from oldphoto.jobs.shutdown import Shutdown
from oldphoto.server import redact
from oldphoto.server.app import create_app
from oldphoto.server.deadlines import header_deadline_protocol
from oldphoto.server.prepared import PreparedFrameProtocol
from oldphoto.server.ws import GOING_AWAY
from oldphoto.settings import Settings


class Server(uvicorn.Server):
    """uvicorn's server, stopping in two steps as `oldphoto worker` does (jobs/shutdown.py, docs/deploy.md).

    The first SIGTERM (or Ctrl-C) drains: no new job starts, and the jobs running here may finish within the grace
    while the server still serves, so their followers see them complete. Then, or at a second signal, uvicorn stops:
    progress sockets are closed with 1001 (going away) so clients know to reconnect, and what still runs is handed
    back to the queue for the next start, without spending its retry (jobs/embedded.py).
    """

    def __init__(self, config: uvicorn.Config, grace_s: float) -> None:
        super().__init__(config)
        self.stop_plan = Shutdown(grace_s)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stop_plan.signal()
        if self.stop_plan.stopped.is_set():
            super().handle_exit(sig, frame)  # the second signal: uvicorn's own stop, at once

    async def on_tick(self, counter: int) -> bool:
        """Every 0.1 s on uvicorn's loop: starts the drain, then ends it when nothing runs here or the grace is spent."""
        if self.stop_plan.draining.is_set() and not self.should_exit:
            service = getattr(self.config.app.state, "service", None)  # type: ignore[union-attr]  # our FastAPI app
            if service is None:  # not started yet: nothing to drain
                self.should_exit = True
            elif not service.draining:
                await service.drain()
            elif self.stop_plan.due(service.running_here()):
                await service.settled()  # the last outcomes are published...
                await asyncio.sleep(0.1)  # ...and each follower's sender gets a turn to write them before sockets close
                self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list | None = None) -> None:
        hub = getattr(self.config.app.state, "hub", None)  # type: ignore[union-attr]  # config.app is our FastAPI app
        if hub is not None:
            await hub.close_all(GOING_AWAY)
        await super().shutdown(sockets)


def serve(args: argparse.Namespace) -> int:
    given = {"data_dir": args.data_dir, "model": args.model, "device": args.device, "workers": args.workers, "auth": args.auth}
    overrides = {k: v for k, v in given.items() if v is not None}
    settings = Settings(**overrides)
    # Migrated here rather than first in the app's lifespan, where a failure would end in uvicorn's traceback; by a
    # process of its own, so that the web process never holds Alembic (11 MB), and its store finds nothing to do.
    if not store_ready(settings.store_url, "serve", apart=True):
        return EXIT_FAILED
    # The store's threads run Python too (SQLAlchemy): the loop must get the GIL back soon after it asks.
    sys.setswitchinterval(settings.gil_switch_ms / 1000)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http=header_deadline_protocol(settings.header_timeout_s),  # uvicorn's httptools protocol, plus a header deadline
        timeout_keep_alive=settings.keep_alive_s,
        # Forwarded headers only from the operator's proxy (OLDPHOTO_FORWARDED_ALLOW_IPS; docs/deploy.md). Always
        # given, so uvicorn's own default (trust 127.0.0.1, or its FORWARDED_ALLOW_IPS variable) never applies.
        proxy_headers=bool(settings.forwarded_allow_ips.strip()),
        forwarded_allow_ips=settings.forwarded_allow_ips.strip() or [],  # idle between requests; uvicorn arms it only after a response
        ws=PreparedFrameProtocol,  # uvicorn's sans-I/O WebSocket protocol, plus prepared frames for fan-out
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_per_message_deflate=False,
        ws_max_size=64 * 1024,
        timeout_graceful_shutdown=5,
        log_level=args.log_level,
        log_config=logs.config(settings.log_format, args.log_level),
        lifespan="on",
    )
    redact.install()
    logging.getLogger("oldphoto").setLevel(args.log_level.upper())
    Server(config, settings.drain_grace_s).run()
    return EXIT_OK
