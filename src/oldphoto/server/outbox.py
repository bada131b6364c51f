"""A bounded queue of events for one slow reader.

When it overflows, older `progress` events of a job give way to the newest (the bar only needs the latest), but
recorded `queued`, `complete`, `error` and `cancelled` are never dropped. The reader sees a jump in `seq` where that
happened and can fetch what it skipped with `after_seq`. A live event (a queue place) still waiting to be sent is
replaced by the job's next one in place: a reader behind by many places hears only the newest.

A `bypass` (a WebSocket's prepared-frame writer, server/prepared.py) takes an event at once, in the publisher's
call, when nothing is queued or being sent before it (so order holds); when it declines, the event is queued.

An `EventTally` (one per process, the hub's) adds up every outbox's events sent and coalesced for /metrics: plain
integers, bumped on the event loop where the outbox already does the work.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from oldphoto.protocol import OutEvent


@dataclass
class EventTally:
    sent: int = 0  # handed to a stream's writer: taken by its reader, or written at once by the bypass
    coalesced: int = 0  # replaced by a newer one of the same job, or dropped to keep a slow reader's queue bounded


class Outbox:
    def __init__(self, capacity: int = 256, bypass: Callable[[OutEvent], bool] | None = None, tally: EventTally | None = None) -> None:
        self.capacity = capacity
        self.tally = tally or EventTally()
        self.items: deque[OutEvent] = deque()
        self.ready = asyncio.Event()
        self.coalesced = 0
        self.bypass = bypass
        self.bypassed = 0
        self.in_flight = False  # the reader took an event and has not finished with it (see `done`)

    def __len__(self) -> int:
        return len(self.items)

    def deliver(self, event: OutEvent) -> None:
        if self.bypass is not None and not self.items and not self.in_flight and self.bypass(event):
            self.bypassed += 1
            self.tally.sent += 1
            return
        if event.live and self._replace_live(event):
            return
        if len(self.items) >= self.capacity and not self._make_room(event):
            self._coalesced()
            return
        self.items.append(event)
        self.ready.set()

    async def get(self) -> OutEvent:
        """The next event; the reader calls `done` once it has passed it on (until then nothing bypasses it)."""
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        self.in_flight = True
        self.tally.sent += 1
        return self.items.popleft()

    def done(self) -> None:
        self.in_flight = False

    def _replace_live(self, event: OutEvent) -> bool:
        for i, waiting in enumerate(self.items):
            if waiting.live and waiting.job_id == event.job_id and waiting.type == event.type:
                self.items[i] = event
                self._coalesced()
                return True
        return False

    def _make_room(self, incoming: OutEvent) -> bool:
        """Drop the oldest droppable event; prefer one of the same job. False if the incoming one should go."""
        droppable = [i for i, e in enumerate(self.items) if not e.is_essential]
        same_job = [i for i in droppable if self.items[i].job_id == incoming.job_id]
        victims = same_job or droppable
        if not victims:
            return incoming.is_essential  # essentials may exceed the bound; progress and live places may not
        del self.items[victims[0]]
        self._coalesced()
        return True

    def _coalesced(self) -> None:
        self.coalesced += 1
        self.tally.coalesced += 1
