"""`GET /api/jobs/{id}/preview`: a running job's latest preview (docs/protocol.md, "Previews").

The worker made the picture and the job store keeps it; this only reads the bytes, on a reader thread, and hands them
on: the web process decodes, resizes and encodes nothing. Another user's job answers as one that does not exist, as
its result does.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from oldphoto.errors import OldphotoError
from oldphoto.jobs import previews
from oldphoto.server import inputs
from oldphoto.server.api import Caller, Service

router = APIRouter()


class NoPreview(OldphotoError):
    code = "no_preview"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("This job has no preview yet.")


@router.get("/api/jobs/{job_id}/preview")
async def get_preview(job_id: str, service: Service, caller: Caller) -> Response:
    job = await service.get(inputs.job_id(job_id), caller.user)
    data = await service.offload.read(previews.latest, service.store, job.id)
    if data is None:
        raise NoPreview()
    # Private, and never cached: each frame has an address of its own (`?v=`), and the next one replaces this.
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})
