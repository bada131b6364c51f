"""`/ws/progress`: one WebSocket follows any number of the caller's jobs (SPEC "Progress protocol").

Close codes:
    1000  normal closure
    1001  going away: the server is shutting down (jobs are kept; reconnect with `after_seq`)
    1008  policy violation: too many messages, subscriptions or connections
    1009  a message was too big
    4001  the token expired: get a new one and reconnect
A handshake without a valid identity or from a foreign Origin is refused before it is accepted (HTTP 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from oldphoto.errors import OldphotoError
from oldphoto.jobs.service import JobService
from oldphoto.protocol import Cancel, Ping, Subscribe, Unsubscribe, client_message, pick_language, pong
from oldphoto.server.auth import COOKIE, Authenticator, Identity, Unauthorized
from oldphoto.server.follow import Follower, follow, unfollow
from oldphoto.server.origins import origin_allowed
from oldphoto.server.outbox import Outbox
from oldphoto.server.prepared import PreparedFrames, frame_writer
from oldphoto.server.ratelimit import RateLimiter

log = logging.getLogger(__name__)
router = APIRouter()

MAX_MESSAGE_BYTES = 4096
MAX_SUBSCRIPTIONS = 64
MAX_CONNECTIONS_PER_USER = 16
GOING_AWAY = 1001
POLICY = 1008
TOO_BIG = 1009
TOKEN_EXPIRED = 4001


class TooManyStreams(OldphotoError):
    code = "too_many_streams"
    http_status = 429

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.retry_after = 5


class Hub:
    """Every open progress connection (WebSocket and SSE) of this process: per-user caps, and shutdown with 1001."""

    def __init__(self) -> None:
        self.connections: set[ProgressConnection] = set()
        self.sockets: Counter[str] = Counter()
        self.streams: Counter[str] = Counter()
        self.frames = PreparedFrames()

    def per_user(self, user: str) -> int:
        return self.sockets[user] + self.streams[user]

    def add(self, connection: ProgressConnection) -> None:
        self.connections.add(connection)
        self.sockets[connection.identity.user] += 1

    def discard(self, connection: ProgressConnection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
            _decrement(self.sockets, connection.identity.user)

    async def counted(self, user: str, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        """An SSE stream that counts against its user's cap while it is open."""
        self.streams[user] += 1
        try:
            async for chunk in stream:
                yield chunk
        finally:
            _decrement(self.streams, user)

    async def close_all(self, code: int = GOING_AWAY) -> None:
        await asyncio.gather(*(c.close(code, "server shutting down") for c in list(self.connections)), return_exceptions=True)


def _decrement(counter: Counter[str], user: str) -> None:
    counter[user] -= 1
    if counter[user] <= 0:
        del counter[user]


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
    if hub.per_user(identity.user) >= MAX_CONNECTIONS_PER_USER:
        await ws.close(code=POLICY, reason="too many connections")
        return
    await ws.accept(subprotocol="bearer" if offered and offered[0].lower() == "bearer" else None)
    lang = pick_language(ws.query_params.get("lang"), ws.headers.get("accept-language"))
    connection = ProgressConnection(ws, app.state.service, app.state.limiter, identity, lang, app.state.settings.ws_queue_size)
    write = frame_writer(ws.scope)
    if write is not None:  # served by `oldphoto serve`: events go out as prepared frames while the reader keeps up
        connection.outbox.bypass = lambda event: write(hub.frames.frame(event, lang))
    hub.add(connection)
    try:
        await connection.run(ws.query_params.get("job_id"), _int(ws.query_params.get("after_seq")))
    finally:
        hub.discard(connection)


def _identify(auth: Authenticator, ws: WebSocket, offered: list[str]) -> Identity:
    from_protocol = offered[1] if len(offered) >= 2 and offered[0].lower() == "bearer" else None
    return auth.from_sources(from_protocol, ws.cookies.get(COOKIE), ws.query_params.get("token"))


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


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

    async def run(self, job_id: str | None, after_seq: int) -> None:
        sender = asyncio.create_task(self._send_loop())
        expiry = asyncio.create_task(self._close_on_expiry())
        try:
            if job_id:
                await self._dispatch(Subscribe(type="subscribe", job_id=job_id[:64], after_seq=after_seq))
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

    async def _receive_loop(self) -> None:
        while not self.closed:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            text = frame.get("text") or (frame.get("bytes") or b"").decode("utf-8", "replace")
            if len(text.encode()) > MAX_MESSAGE_BYTES:
                await self.close(TOO_BIG, "message too big")
                return
            if not await self.limiter.allow("ws_message:connection", self.key):
                await self.close(POLICY, "too many messages")
                return
            await self._handle(text)

    async def _handle(self, text: str) -> None:
        try:
            message = client_message.validate_python(json.loads(text))
        except (ValueError, ValidationError):
            await self._send({"type": "error", "code": "bad_message", "error": "That message is not part of the protocol.", "progress": 0})
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
        follower = await follow(self.service, message.job_id, message.after_seq, self.outbox)
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
