"""The FastAPI application: REST, WebSocket and SSE progress, and the page. Knows no tensors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from oldphoto import __version__
from oldphoto.errors import OldphotoError
from oldphoto.jobs.embedded import LocalWorkers
from oldphoto.jobs.service import JobService
from oldphoto.jobs.store import JobStore
from oldphoto.server import api, attention, previews, sse, ws
from oldphoto.server.auth import Authenticator
from oldphoto.server.gcpolicy import GcPolicy
from oldphoto.server.hub import Hub
from oldphoto.server.inspect import Inspector
from oldphoto.server.looplag import LoopLag
from oldphoto.server.metrics import Snapshot, render
from oldphoto.server.origins import origin_allowed
from oldphoto.server.ratelimit import RateLimiter
from oldphoto.server.sweep import sweep_stale_uploads
from oldphoto.settings import Settings, get_settings
from oldphoto.wiring import budget, job_service, run_options

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before the first request (which could spool a new upload there), and off the loop: it may be many files.
        await asyncio.to_thread(sweep_stale_uploads, settings.data_dir / "tmp")
        store = await asyncio.to_thread(JobStore, settings.store_url)
        service = job_service(settings, store)
        await service.start()
        app.state.service = service
        app.state.inspector.start()
        app.state.gc_policy.start()
        app.state.loop_lag.start()
        try:
            yield
        finally:
            await app.state.loop_lag.stop()
            await app.state.gc_policy.stop()
            await app.state.hub.close_all()
            app.state.inspector.close()
            await service.stop()
            await asyncio.to_thread(store.close)

    app = FastAPI(title="oldphoto", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.run_options = run_options(settings)  # uploads' workflows are checked against what they will run with
    app.state.budget = budget(settings)  # and costed against these caps before their photo is decoded
    app.state.auth = Authenticator(settings)
    # Scale-out: limits counted in Redis, across every web node (a connection's message rate included: one place).
    app.state.limiter = RateLimiter(settings.broker_url, namespace=settings.broker_prefix) if settings.scale_out else RateLimiter()
    app.state.hub = Hub()
    app.state.inspector = Inspector(settings.check_processes, settings.check_timeout_s)
    app.state.loop_lag = LoopLag()
    app.state.gc_policy = GcPolicy(settings.gc_freeze_every_s, settings.gc_sweep_every_s)
    _install_error_handlers(app)
    app.add_middleware(OriginGuard, settings=settings)
    if settings.origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.origins, allow_credentials=True, allow_methods=["*"], allow_headers=["*"]
        )
    app.include_router(api.router)
    app.include_router(previews.router)
    app.include_router(attention.router)
    app.include_router(sse.router)
    app.include_router(ws.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        service: JobService = request.app.state.service
        snapshot = Snapshot(
            capacity=await service.capacity(),
            jobs_by_status=await service.job_counts(),
            connections=len(request.app.state.hub.connections),
            subscriptions=service.bus.subscription_count,
            places_broadcasts=service.places.broadcasts,
            gc_objects_at_sweep=request.app.state.gc_policy.alive_at_sweep,
            workers_recycled=service.runner.workers_recycled if isinstance(service.runner, LocalWorkers) else None,
            telemetry=service.telemetry.view(),
            events=request.app.state.hub.events,
        )
        return Response(render(snapshot, request.app.state.loop_lag), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def error_body(exc: OldphotoError) -> tuple[dict[str, Any], dict[str, str]]:
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    # A few errors carry their numbers too (`over_budget`: the estimate and the caps), beside the SPEC shape.
    return {**exc.extra, "error": exc.message, "code": exc.code}, headers


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OldphotoError)
    async def known(_: Request, exc: OldphotoError) -> JSONResponse:
        body, headers = error_body(exc)
        return JSONResponse(body, status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        return JSONResponse({"error": f"The request is not valid: {first['msg']}.", "code": "invalid_request"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse({"error": "Something went wrong on the server.", "code": "internal_error"}, status_code=500)

    @app.exception_handler(HTTPException)
    async def http(_: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "too_large"}
        return JSONResponse({"error": str(exc.detail), "code": codes.get(exc.status_code, "http_error")}, status_code=exc.status_code)


class OriginGuard:
    """Refuses a state-changing request whose Origin is not on the allowlist (cross-site request forgery)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            request = Request(scope)
            if not origin_allowed(request.headers.get("origin"), request.url, self.settings):
                response = JSONResponse(
                    {"error": "Requests from this web origin are not allowed.", "code": "forbidden_origin"}, status_code=403
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
