from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from oldphoto import logs
from oldphoto.cli import EXIT_FAILED, EXIT_OK
from oldphoto.commands.db import store_ready
from oldphoto.server import redact
from oldphoto.server.app import create_app
from oldphoto.server.deadlines import header_deadline_protocol
from oldphoto.server.prepared import PreparedFrameProtocol
from oldphoto.server.ws import GOING_AWAY
from oldphoto.settings import Settings


class Server(uvicorn.Server):
    """Closes progress sockets with 1001 (going away) before uvicorn's own shutdown, so clients know to reconnect."""

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
    Server(config).run()
    return EXIT_OK
