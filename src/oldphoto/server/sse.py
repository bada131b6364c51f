"""`GET /api/jobs/{id}/events`: the WebSocket's events as Server-Sent Events (`id:` is `seq`; Last-Event-ID resumes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from oldphoto.jobs.service import JobService
from oldphoto.protocol import pick_language
from oldphoto.server.api import Caller, Service
from oldphoto.server.follow import follow, unfollow
from oldphoto.server.outbox import Outbox

router = APIRouter()


@router.get("/api/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, service: Service, caller: Caller) -> StreamingResponse:
    service.get(job_id, caller.user)
    resume_from = request.headers.get("last-event-id") or request.query_params.get("after_seq") or "0"
    after_seq = int(resume_from) if resume_from.isdigit() else 0
    lang = pick_language(request.query_params.get("lang"), request.headers.get("accept-language"))
    settings = request.app.state.settings
    stream = _stream(service, job_id, after_seq, lang, settings.ws_queue_size, settings.sse_heartbeat_s)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _stream(service: JobService, job_id: str, after_seq: int, lang: str, capacity: int, heartbeat_s: float) -> AsyncIterator[str]:
    outbox = Outbox(capacity)
    follower = follow(service, job_id, after_seq, outbox)
    try:
        yield "retry: 2000\n\n"
        while True:
            try:
                event = await asyncio.wait_for(outbox.get(), timeout=heartbeat_s)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            yield f"id: {event.seq}\ndata: {json.dumps(event.to_wire(lang), ensure_ascii=False)}\n\n"
            if event.is_final and not len(outbox):
                return
    finally:
        unfollow(service, follower)
