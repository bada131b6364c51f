"""`GET /api/jobs/{id}/events`: the WebSocket's events as Server-Sent Events (`id:` is `seq`; Last-Event-ID resumes).

A stream takes one of its user's progress places (shared with WebSockets, server/hub.py) for as long as it is open,
and ends with a `token_expired` event when the token it was opened with expires, as a WebSocket closes with 4001.
When the server shuts down it ends at once, as a WebSocket closes with 1001: a `: going away` comment and a `retry:`
with jitter (1-3 s, so that a node's browsers do not all come back in the same instant), then the end of the body.
An EventSource reconnects by itself with `Last-Event-ID` (through a proxy, to another node); before, the stream
stayed open until uvicorn's graceful timeout (5 s) cancelled it mid-chunk, and the node took those 5 s to stop.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from oldphoto.jobs.service import JobService
from oldphoto.protocol import OutEvent, pick_language
from oldphoto.server import inputs
from oldphoto.server.api import Caller, Service
from oldphoto.server.follow import follow, unfollow
from oldphoto.server.hub import Hub, Slot
from oldphoto.server.outbox import EventTally, Outbox

router = APIRouter()

# Named, so an EventSource's `onmessage` (job events) never mistakes it for a job's `error` event.
TOKEN_EXPIRED = "event: token_expired\ndata: " + json.dumps(
    {"error": "Your session has expired; start a new one.", "code": "token_expired"}
) + "\n\n"




def going_away() -> str:
    """The last words of a stream at shutdown: the EventSource's reconnect delay, jittered, then the body ends."""
    return f": going away\nretry: {random.randint(1000, 3000)}\n\n"


class StreamEnd:
    """A stream as the hub sees it (server/hub.py `Closable`): `close` asks it to end at the next chance."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()

    async def close(self, code: int, reason: str = "") -> None:
        self.asked.set()


class HeldStream(StreamingResponse):
    """A streaming response that gives its user's place back when it ends, whether or not its body ever started."""

    def __init__(self, content: AsyncIterator[str], slot: Slot, headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


@router.get("/api/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, service: Service, caller: Caller) -> Response:
    job = await service.get(inputs.job_id(job_id), caller.user)
    after_seq = _resume_point(request)
    if job.status.is_final and after_seq >= job.last_seq:
        return Response(status_code=204)  # EventSource stops reconnecting on 204
    lang = pick_language(request.query_params.get("lang"), request.headers.get("accept-language"))
    settings = request.app.state.settings
    hub: Hub = request.app.state.hub
    slot = hub.admit(caller.user)  # the last step before the response: nothing between here and it can fail
    metrics = inputs.wants_metrics(request.query_params.get("metrics"))
    stream = _stream(
        service, job_id, after_seq, lang, settings.ws_queue_size, settings.sse_heartbeat_s, caller.expires_at, hub.events, metrics, hub
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return HeldStream(stream, slot, headers)


def _resume_point(request: Request) -> int:
    """Last-Event-ID, else `?after_seq=`, else 0. Empty means absent (as EventSource sends it); malformed is a 400."""
    header = request.headers.get("last-event-id")
    if header:
        return inputs.parse_seq(header, "Last-Event-ID")
    return inputs.parse_seq(request.query_params.get("after_seq"), "after_seq")


async def _stream(
    service: JobService,
    job_id: str,
    after_seq: int,
    lang: str,
    capacity: int,
    heartbeat_s: float,
    expires_at: float,
    tally: EventTally,
    metrics: bool = False,
    hub: Hub | None = None,
) -> AsyncIterator[str]:
    outbox = Outbox(capacity, tally=tally)
    end = StreamEnd()
    if hub is not None:
        hub.add_stream(end)
    follower = None
    getter: asyncio.Future[OutEvent] | None = None
    ending = asyncio.ensure_future(end.asked.wait())
    try:
        follower = await follow(service, job_id, after_seq, outbox, metrics=metrics)
        yield "retry: 2000\n\n"
        while True:
            left = expires_at - time.time()
            if left <= 0:
                yield TOKEN_EXPIRED
                return
            if getter is None:  # kept across heartbeats: one task per event, as wait_for made
                getter = asyncio.ensure_future(outbox.get())
            # Woken at the token's expiry too, not only at the next heartbeat; and at shutdown.
            await asyncio.wait((getter, ending), timeout=min(heartbeat_s, left), return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                event, getter = getter.result(), None
                # A live event has no place in the log: no `id:`, so Last-Event-ID stays the last recorded seq.
                yield f"data: {event.wire_text(lang)}\n\n" if event.live else f"id: {event.seq}\ndata: {event.wire_text(lang)}\n\n"
                if event.is_final and not len(outbox):
                    return
            elif ending.done():
                yield going_away()
                return
            elif time.time() < expires_at:
                yield ": heartbeat\n\n"
    finally:
        for task in (getter, ending):
            if task is not None:
                task.cancel()
        if hub is not None:
            hub.discard_stream(end)
        if follower is not None:
            unfollow(service, follower)
