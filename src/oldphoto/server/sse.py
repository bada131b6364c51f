"""`GET /api/jobs/{id}/events`: the WebSocket's events as Server-Sent Events (`id:` is `seq`; Last-Event-ID resumes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from oldphoto.jobs.service import JobService
from oldphoto.protocol import pick_language
from oldphoto.server.api import Caller, Service
from oldphoto.server.follow import follow, unfollow
from oldphoto.server.outbox import Outbox
from oldphoto.server.ws import MAX_CONNECTIONS_PER_USER, Hub, TooManyStreams

router = APIRouter()


@router.get("/api/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, service: Service, caller: Caller) -> Response:
    job = await service.get(job_id, caller.user)
    resume_from = request.headers.get("last-event-id") or request.query_params.get("after_seq") or "0"
    after_seq = int(resume_from) if resume_from.isdigit() else 0
    if job.status.is_final and after_seq >= job.last_seq:
        return Response(status_code=204)  # EventSource stops reconnecting on 204
    hub: Hub = request.app.state.hub
    if hub.per_user(caller.user) >= MAX_CONNECTIONS_PER_USER:
        raise TooManyStreams(f"At most {MAX_CONNECTIONS_PER_USER} progress streams per user are open at once.")
    lang = pick_language(request.query_params.get("lang"), request.headers.get("accept-language"))
    settings = request.app.state.settings
    stream = hub.counted(caller.user, _stream(service, job_id, after_seq, lang, settings.ws_queue_size, settings.sse_heartbeat_s))
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _stream(service: JobService, job_id: str, after_seq: int, lang: str, capacity: int, heartbeat_s: float) -> AsyncIterator[str]:
    outbox = Outbox(capacity)
    follower = await follow(service, job_id, after_seq, outbox)
    try:
        yield "retry: 2000\n\n"
        while True:
            try:
                event = await asyncio.wait_for(outbox.get(), timeout=heartbeat_s)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            # A live event has no place in the log: no `id:`, so Last-Event-ID stays the last recorded seq.
            yield f"data: {event.wire_text(lang)}\n\n" if event.live else f"id: {event.seq}\ndata: {event.wire_text(lang)}\n\n"
            if event.is_final and not len(outbox):
                return
    finally:
        unfollow(service, follower)
