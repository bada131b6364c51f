"""REST: sessions, jobs, results, models, health (SPEC "REST")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from oldphoto.engine import cost
from oldphoto.engine.context import RunOptions
from oldphoto.engine.graph import Workflow
from oldphoto.errors import BadInput, OldphotoError
from oldphoto.jobs.announcements import result_url
from oldphoto.jobs.errors import JobNotFound
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.service import JobService
from oldphoto.jobs.store import Job
from oldphoto.protocol import pick_language, translate
from oldphoto.server import inputs
from oldphoto.server.auth import ANONYMOUS_PREFIX, ANONYMOUS_TTL_S, COOKIE, Authenticator, Identity, SessionsDisabled, bearer
from oldphoto.server.inspect import Inspector
from oldphoto.server.ratelimit import RateLimiter
from oldphoto.server.uploads import receive_upload
from oldphoto.settings import Settings

router = APIRouter()


# Async so FastAPI calls them on the loop instead of hopping to its thread pool on every request.
async def service_of(request: Request) -> JobService:
    return request.app.state.service


async def identity_of(request: Request) -> Identity:
    auth: Authenticator = request.app.state.auth
    return auth.from_sources(bearer(request.headers.get("authorization")), request.cookies.get(COOKIE))


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


Service = Annotated[JobService, Depends(service_of)]
Caller = Annotated[Identity, Depends(identity_of)]


@router.post("/api/session")
async def create_session(request: Request, response: Response) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    if settings.auth != "anonymous":
        raise SessionsDisabled("Anonymous sessions are off on this server; use a token from its operator.")
    limiter: RateLimiter = request.app.state.limiter
    await limiter.hit("session:address", client_address(request))
    auth: Authenticator = request.app.state.auth
    token = auth.issue(_cookie_user(request))
    response.set_cookie(
        COOKIE, token, max_age=ANONYMOUS_TTL_S, httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/"
    )
    return {"token": token, "expires_in": ANONYMOUS_TTL_S}


def _cookie_user(request: Request) -> str | None:
    """A browser that already has an anonymous session keeps its user (and so its jobs) when it asks again.

    Only anonymous users are renewed: a short-lived token issued to a named user must not become a long one.
    """
    try:
        user = request.app.state.auth.verify(request.cookies[COOKIE]).user
    except (KeyError, OldphotoError):
        return None
    return user if user.startswith(ANONYMOUS_PREFIX) else None



@router.post("/api/jobs", status_code=202)
async def create_job(request: Request, service: Service, caller: Caller) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    limiter: RateLimiter = request.app.state.limiter
    await limiter.hit("job:user", caller.user)
    await limiter.hit("job:address", client_address(request))
    upload = await receive_upload(request, max_bytes=settings.max_upload_bytes, tmp_dir=settings.data_dir / "tmp")
    try:
        # Cheapest first: a job that would be refused anyway must not cost a decode (server/inspect.py).
        workflow, parsed = _workflow_text(upload.fields, request.app.state.run_options, service)
        model = _model_name(upload.fields.get("model"), request)
        share = job_share(caller, request, settings)
        await _check_user_limit(service, caller.user, share)
        inspector: Inspector = request.app.state.inspector
        judge = _budget_judge(parsed, request.app.state.run_options, model, request.app.state.budget)
        width, height = await inspector.size(upload.path, settings.max_pixels, share or caller.user, judge)  # a fair share of the checkers
        admission = await service.submit(caller.user, upload.path, workflow, model, share, pixels=width * height)
    finally:
        await asyncio.to_thread(upload.path.unlink, missing_ok=True)
    job = admission.job
    return {
        "job_id": job.id,
        "status": job.status.value,
        "position": admission.position,
        "ws_url": f"/ws/progress?job_id={job.id}",
        "events_url": f"/api/jobs/{job.id}/events",
        "status_url": f"/api/jobs/{job.id}",
    }


def job_share(caller: Identity, request: Request, settings: Settings) -> str | None:
    """What a job counts against beside its owner: for an anonymous session, its client address (docs/jobs.md,
    "Fairness": sessions are free, so six from one address would otherwise take six users' turns and room)."""
    if settings.anonymous_share == "address" and caller.user.startswith(ANONYMOUS_PREFIX):
        return f"address:{client_address(request)}"
    return None


async def _check_user_limit(service: JobService, user: str, share: str | None) -> None:
    """The user's (and share's) job limit, before the decode. Admission checks again, atomically; this only spares
    a decode."""
    of_share = await service.active_count(share=share) if share else None
    service.rules.check(await service.active_count(user), 0, of_share)


@router.get("/api/jobs")
async def list_jobs(request: Request, service: Service, caller: Caller) -> list[dict[str, Any]]:
    lang = _lang(request)
    return [job_view(job, service, lang) for job in await service.list(caller.user)]


@router.get("/api/jobs/{job_id}")
async def get_job(job_id: str, request: Request, service: Service, caller: Caller) -> dict[str, Any]:
    return job_view(await service.get(inputs.job_id(job_id), caller.user), service, _lang(request))


@router.delete("/api/jobs/{job_id}", status_code=202)
async def cancel_job(job_id: str, request: Request, service: Service, caller: Caller) -> dict[str, Any]:
    return job_view(await service.cancel(inputs.job_id(job_id), caller.user), service, _lang(request))


@router.get("/results/{job_id}.png")
async def get_result(job_id: str, service: Service, caller: Caller) -> FileResponse:
    path = await service.result_path(await service.get(inputs.job_id(job_id), caller.user))
    if path is None:
        raise JobNotFound()
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/api/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Names only: where the operator keeps checkpoints (`OLDPHOTO_MODEL` may be a path) is nobody else's business."""
    from oldphoto.models.catalog import public_catalog, public_name

    settings: Settings = request.app.state.settings
    models = await asyncio.to_thread(public_catalog, settings.models_dir)  # it looks at files: not on the loop
    return {"default": public_name(settings.model), "models": models}


@router.get("/healthz", response_model=None)
async def health(service: Service) -> dict[str, Any] | JSONResponse:
    """`degraded` (still 200: the web node itself is fine) when no worker is ready to run a job; `draining` (503, so
    a load balancer sends new clients elsewhere) while a graceful stop lets the running jobs finish."""
    capacity = await service.capacity()
    listed = service.runner.backends()
    backends = {"backends": listed} if listed else {}
    if service.draining:
        stopping = "This server is stopping: running jobs finish, new ones wait for its restart."
        return JSONResponse({"status": "draining", "reason": stopping, **capacity.as_dict()}, status_code=503)
    reason = {"reason": "No worker is running: queued jobs wait until one starts."} if capacity.degraded else {}
    return {"status": "degraded" if capacity.degraded else "ok", **reason, **capacity.as_dict(), **backends}


def job_view(job: Job, service: JobService, lang: str) -> dict[str, Any]:
    succeeded = job.status == JobStatus.SUCCEEDED
    return {
        "job_id": job.id,
        "status": job.status.value,
        "stage": job.stage,
        "message": translate(job.message_key, lang, **job.message_params),
        "progress": job.progress,
        "position": _position(job, service),
        "result_url": result_url(job.id) if succeeded else None,
        "error": job.error,
        "code": job.code,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        # An ended job's run summed up (docs/protocol.md, "Metrics"): stage times, peak memory, speeds.
        "metrics": job.metrics,
    }


def _position(job: Job, service: JobService) -> int | None:
    """The live place; for a job admitted since the last pass of the places, the one recorded at admission."""
    if job.status != JobStatus.QUEUED:
        return None
    live = service.position(job.id)
    return live if live is not None else job.message_params.get("position")


def _lang(request: Request) -> str:
    return pick_language(request.query_params.get("lang"), request.headers.get("accept-language"))


def _workflow_text(fields: dict[str, str], options: RunOptions, service: JobService) -> tuple[str, Workflow | None]:
    """Validated now, by the backend that will run it, so a broken workflow is a 400 before anything is queued;
    stored as text for the worker. None: a prompt the backend runs as it is (ComfyUI's own nodes; docs/comfyui.md)."""
    text = fields.get("workflow") or json.dumps({"steps": fields.get("steps") or "colorize"})
    return text, service.runner.admits(text, options)


def _budget_judge(
    workflow: Workflow | None, options: RunOptions, model: str | None, budget: cost.Budget
) -> Callable[[int, int], None]:
    """What the job would cost on a photo of this size, against the caps: run on the header's size, before any decode
    (`server/inspect.py`). The options are the job's own, as the worker will get them (`ServiceConfig.work_item`).
    A foreign prompt's cost is not known here: its backend's own limits apply."""
    options = replace(options, model=model) if model else options

    def judge(width: int, height: int) -> None:
        if workflow is not None:
            cost.check(workflow, width, height, options, budget)

    return judge


def _model_name(requested: str | None, request: Request) -> str | None:
    """Users pick among known model names only; a path from a user never reaches the filesystem."""
    if not requested:
        return None
    from oldphoto.models.catalog import known_names

    if requested not in known_names():
        raise BadInput(f"Unknown model {requested!r}.", code="unknown_model")
    return requested
