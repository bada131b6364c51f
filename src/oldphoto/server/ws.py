"""`/ws/progress`: one WebSocket follows any number of the caller's jobs (SPEC "Progress protocol").

Close codes:
    1000  normal closure
    1001  going away: the server is shutting down (jobs are kept; reconnect with `after_seq`)
    1008  policy violation: too many messages, subscriptions or connections
    1008  also: no first message within `ws_first_message_s` from a socket that follows no job
    1009  a message was too big
    4001  the token expired: get a new one and reconnect
A handshake without a valid identity or from a foreign Origin is refused before it is accepted (HTTP 403).
A malformed `?after_seq=` (or `?job_id=`) is answered on the open socket with an `error` event, like a malformed
`subscribe` message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from oldphoto.errors import OldphotoError
from oldphoto.jobs.service import JobService
from oldphoto.protocol import Cancel, Ping, Subscribe, Unsubscribe, client_message, pick_language, pong
from oldphoto.server.auth import COOKIE, Authenticator, Identity, Unauthorized
from oldphoto.server.follow import Follower, follow, unfollow
from oldphoto.server.hub import GOING_AWAY, MAX_CONNECTIONS_PER_USER, Hub, TooManyStreams
from oldphoto.server.inputs import InvalidRequest, parse_seq, wants_metrics
from oldphoto.server.origins import origin_allowed
from oldphoto.server.outbox import Outbox
from oldphoto.server.prepared import frame_writer
from oldphoto.server.ratelimit import RateLimiter

log = logging.getLogger(__name__)
router = APIRouter()

MAX_MESSAGE_BYTES = 4096
MAX_SUBSCRIPTIONS = 64
POLICY = 1008
TOO_BIG = 1009
TOKEN_EXPIRED = 4001
BAD_MESSAGE = {"type": "error", "code": "bad_message", "error": "That message is not part of the protocol.", "progress": 0}

__all__ = ["GOING_AWAY", "MAX_CONNECTIONS_PER_USER", "Hub", "TooManyStreams", "router"]


@router.websocket("/ws/progress")
async def progress_socket(ws: WebSocket) -> None:
    app = ws.app
    if not origin_allowed(ws.headers.get("origin"), ws.url, app.state.settings):
        await ws.close(code=POLICY, reason="origin not allowed")
        return
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    try:
        identity = _identify(app.state.auth, ws, offered)
    except Unauthorized:
        await ws.close(code=POLICY, reason="unauthorized")
        return
    hub: Hub = app.state.hub
    try:
        slot = hub.admit(identity.user)  # counted now, before the first await: concurrent handshakes cannot all pass
    except TooManyStreams:
        await ws.close(code=POLICY, reason="too many connections")
        return
    try:
        await ws.accept(subprotocol="bearer" if offered and offered[0].lower() == "bearer" else None)
        lang = pick_language(ws.query_params.get("lang"), ws.headers.get("accept-language"))
        settings = app.state.settings
        connection = ProgressConnection(ws, app.state.service, app.state.limiter, identity, lang, settings.ws_queue_size)
        connection.first_message_s = settings.ws_first_message_s
        connection.metrics = wants_metrics(ws.query_params.get("metrics"))
        connection.outbox.tally = hub.events
        write = frame_writer(ws.scope)
        if write is not None:  # served by `oldphoto serve`: events go out as prepared frames while the reader keeps up
            connection.outbox.bypass = lambda event: write(hub.frames.frame(event, lang))
        hub.add(connection)
        try:
            await connection.run(ws.query_params.get("job_id"), ws.query_params.get("after_seq"))
        finally:
            hub.discard(connection)
    finally:
        slot.release()


def _identify(auth: Authenticator, ws: WebSocket, offered: list[str]) -> Identity:
    from_protocol = offered[1] if len(offered) >= 2 and offered[0].lower() == "bearer" else None
    return auth.from_sources(from_protocol, ws.cookies.get(COOKIE), ws.query_params.get("token"))


def query_subscription(job_id: str, after_seq: str | None) -> Subscribe:
    """`?job_id=&after_seq=` as the `subscribe` message it stands for, held to the same rules (ValueError if not)."""
    try:
        seq = parse_seq(after_seq, "after_seq")
    except InvalidRequest as exc:
        raise ValueError(exc.message) from None
    return Subscribe.model_validate({"type": "subscribe", "job_id": job_id[:64], "after_seq": seq})


class ProgressConnection:
    def __init__(self, ws: WebSocket, service: JobService, limiter: RateLimiter, identity: Identity, lang: str, capacity: int) -> None:
        self.ws = ws
        self.service = service
        self.limiter = limiter
        self.identity = identity
        self.lang = lang
        self.outbox = Outbox(capacity)
        self.followers: dict[str, Follower] = {}
        self.key = f"{identity.user}:{uuid.uuid4().hex}"
        self.closed = False
        self.metrics = False  # `?metrics=`: what a subscription that does not say gets
        # A socket that follows nothing once its `?job_id=` is handled must say something within this long, or it is
        # closed with 1008: an accepted socket costs memory and a per-user place, and pings alone keep it forever.
        self.first_message_s: float | None = None

    async def run(self, job_id: str | None, after_seq: str | None) -> None:
        sender = asyncio.create_task(self._send_loop())
        expiry = asyncio.create_task(self._close_on_expiry())
        try:
            if job_id:
                try:
                    subscription = query_subscription(job_id, after_seq)
                except ValueError:  # pydantic's ValidationError is one too
                    await self._send({**BAD_MESSAGE, "error": "The job_id or after_seq of the URL is not valid."})
                else:
                    await self._dispatch(subscription)
            if not self.followers and self.first_message_s is not None and not await self._first_message_within(self.first_message_s):
                return
            await self._receive_loop()
        except WebSocketDisconnect:
            pass
        finally:
            for task in (sender, expiry):
                task.cancel()
            for follower in self.followers.values():
                unfollow(self.service, follower)
            self.followers.clear()
            with contextlib.suppress(Exception):
                await asyncio.gather(sender, expiry, return_exceptions=True)

    async def close(self, code: int, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close(code=code, reason=reason)

    async def _first_message_within(self, seconds: float) -> bool:
        """Handles the socket's first message if it comes in time; False (and the socket closed) if it does not."""
        try:
            frame = await asyncio.wait_for(self.ws.receive(), timeout=seconds)
        except TimeoutError:
            await self.close(POLICY, "no message in time")
            return False
        return await self._take(frame)

    async def _receive_loop(self) -> None:
        while not self.closed:
            if not await self._take(await self.ws.receive()):
                return

    async def _take(self, frame: Any) -> bool:
        """One frame from the client; False when the connection is over."""
        if frame["type"] == "websocket.disconnect":
            return False
        text = frame.get("text") or (frame.get("bytes") or b"").decode("utf-8", "replace")
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            await self.close(TOO_BIG, "message too big")
            return False
        if not await self.limiter.allow("ws_message:connection", self.key):
            await self.close(POLICY, "too many messages")
            return False
        await self._handle(text)
        return not self.closed

    async def _handle(self, text: str) -> None:
        try:
            message = client_message.validate_python(json.loads(text))
        except (ValueError, ValidationError, RecursionError):  # RecursionError: `[[[[...` nested past the parser's depth
            await self._send(BAD_MESSAGE)
            return
        await self._dispatch(message)

    async def _dispatch(self, message: Any) -> None:
        try:
            if isinstance(message, Ping):
                await self._send(pong())
            elif isinstance(message, Subscribe):
                await self._subscribe(message)
            elif isinstance(message, Unsubscribe):
                follower = self.followers.pop(message.job_id, None)
                if follower:
                    unfollow(self.service, follower)
            elif isinstance(message, Cancel):
                await self.service.cancel(message.job_id, self.identity.user)
        except OldphotoError as exc:
            job_id = getattr(message, "job_id", None)
            await self._send({"type": "error", "job_id": job_id, "code": exc.code, "error": exc.message, "progress": 0})

    async def _subscribe(self, message: Subscribe) -> None:
        await self.service.get(message.job_id, self.identity.user)  # ownership: another's job is "not found"
        if message.job_id in self.followers:
            unfollow(self.service, self.followers.pop(message.job_id))
        if len(self.followers) >= MAX_SUBSCRIPTIONS:
            raise OldphotoError(f"At most {MAX_SUBSCRIPTIONS} jobs can be followed on one connection.", code="too_many_subscriptions")
        metrics = self.metrics if message.metrics is None else message.metrics
        follower = await follow(self.service, message.job_id, message.after_seq, self.outbox, metrics=metrics)
        previous = self.followers.pop(message.job_id, None)  # the same job asked for twice at once: the newer wins
        if previous is not None:
            unfollow(self.service, previous)
        if self.closed:
            unfollow(self.service, follower)
            return
        self.followers[message.job_id] = follower

    async def _send_loop(self) -> None:
        while True:
            event = await self.outbox.get()
            try:
                await self.ws.send_text(event.wire_text(self.lang))
            finally:
                self.outbox.done()

    async def _send(self, payload: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(payload, ensure_ascii=False))

    async def _close_on_expiry(self) -> None:
        await asyncio.sleep(max(0.0, self.identity.expires_at - time.time()))
        await self.close(TOKEN_EXPIRED, "token expired")
