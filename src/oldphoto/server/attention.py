"""`GET /api/jobs/{id}/attention` and its maps: a colorize job's colour queries, made visible (docs/protocol.md,
"Colour queries").

The worker drew the maps and packed them beside the result (jobs/querymaps.py); this only reads that file, on a reader
thread, and hands its index (with the maps' addresses) and its PNGs on. Another user's job answers as one that does
not exist, as its result does; a job without maps (not a colorize job, the setting off, not finished) answers 404
`no_attention`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from oldphoto.errors import OldphotoError
from oldphoto.jobs import querymaps
from oldphoto.server import inputs
from oldphoto.server.api import Caller, Service

router = APIRouter()
# The maps of a finished job never change: the browser may keep them as long as the result.
CACHE = "private, max-age=3600"


class NoAttention(OldphotoError):
    code = "no_attention"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("This job has no colour-query maps.")


@router.get("/api/jobs/{job_id}/attention")
async def get_attention(job_id: str, service: Service, caller: Caller) -> dict[str, Any]:
    job = await service.get(inputs.job_id(job_id), caller.user)
    path = await service.query_maps_path(job)
    index = None if path is None else await service.offload.read(querymaps.read_index, path)
    if index is None:
        raise NoAttention()
    return querymaps.urls(job.id, index)


@router.get("/api/jobs/{job_id}/attention/{name}.png")
async def get_attention_map(job_id: str, name: str, service: Service, caller: Caller) -> Response:
    job = await service.get(inputs.job_id(job_id), caller.user)
    path = await service.query_maps_path(job)
    data = None if path is None else await service.offload.read(querymaps.read_image, path, name)
    if data is None:
        raise NoAttention()
    return Response(data, media_type="image/png", headers={"Cache-Control": CACHE})
