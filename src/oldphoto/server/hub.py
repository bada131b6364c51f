"""Every progress stream of this process, WebSockets and SSE alike: the per-user cap, and shutdown with 1001.

At shutdown (`close_all`, called by `oldphoto serve` before uvicorn's own shutdown) every WebSocket is closed with
1001 and every event stream ends at once, so their clients reconnect (through a proxy, to another web node) at once
instead of when uvicorn's graceful timeout cancels a stream that never ends by itself (5 s, cut mid-chunk). A
stream or socket that arrives while the hub closes is closed as soon as it is added.

The cap is checked and counted in one step (`admit`), before the first `await` of the request that asks: everything
here runs on one event loop, so no other request can pass the check between the two. Counting later (when a
socket is accepted, or when a stream's body starts) let 100 concurrent requests of one user all pass a cap of 16.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Protocol

from oldphoto.errors import OldphotoError
from oldphoto.server.outbox import EventTally
from oldphoto.server.prepared import PreparedFrames

MAX_CONNECTIONS_PER_USER = 16
GOING_AWAY = 1001


class TooManyStreams(OldphotoError):
    code = "too_many_streams"
    http_status = 429

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.retry_after = 5


class Closable(Protocol):
    async def close(self, code: int, reason: str = "") -> None: ...


class Slot:
    """One admitted stream of one user; gives its place back exactly once, however its request ends."""

    def __init__(self, hub: Hub, user: str) -> None:
        self._hub = hub
        self.user = user
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._hub._give_back(self.user)


class Hub:
    def __init__(self, max_per_user: int | None = None) -> None:
        # Read when the hub is made, not when this module is: the fan-out benchmark lifts the module's constant first.
        self.max_per_user = MAX_CONNECTIONS_PER_USER if max_per_user is None else max_per_user
        self.connections: set[Closable] = set()  # open WebSockets (ProgressConnection), closed with 1001 at shutdown
        self.streams: set[Closable] = set()  # open event streams (server/sse.py), ended at shutdown
        self.closing: int | None = None  # the close code, once close_all has begun
        self._late: set[asyncio.Task[None]] = set()
        self.open: Counter[str] = Counter()  # admitted streams per user, WebSockets and SSE together
        self.frames = PreparedFrames()
        self.events = EventTally()  # every stream's events sent and coalesced, for /metrics

    def per_user(self, user: str) -> int:
        return self.open[user]

    def admit(self, user: str) -> Slot:
        """A place for one more stream of `user`, or TooManyStreams. Synchronous on purpose: see the module doc."""
        if self.open[user] >= self.max_per_user:
            raise TooManyStreams(f"At most {self.max_per_user} progress streams per user are open at once.")
        self.open[user] += 1
        return Slot(self, user)

    def _give_back(self, user: str) -> None:
        self.open[user] -= 1
        if self.open[user] <= 0:
            del self.open[user]

    def add(self, connection: Closable) -> None:
        self.connections.add(connection)
        self._close_if_late(connection)

    def discard(self, connection: Closable) -> None:
        self.connections.discard(connection)

    def add_stream(self, stream: Closable) -> None:
        self.streams.add(stream)
        self._close_if_late(stream)

    def discard_stream(self, stream: Closable) -> None:
        self.streams.discard(stream)

    async def close_all(self, code: int = GOING_AWAY) -> None:
        self.closing = code
        every = list(self.connections) + list(self.streams)
        await asyncio.gather(*(c.close(code, "server shutting down") for c in every), return_exceptions=True)

    def _close_if_late(self, closable: Closable) -> None:
        """One added after close_all began (its request was accepted meanwhile) is closed too, not left to the timeout."""
        if self.closing is not None:
            task = asyncio.get_running_loop().create_task(closable.close(self.closing, "server shutting down"))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
