"""Following one job: every recorded event after `last_seq`, each exactly once and in order, plus its live place and,
while it runs, its live metrics.

The replay is read off the event loop, so a follower subscribes first and reads the log second: an event recorded
before the read is in the log, one recorded after it is published after the subscription, and the seq drops what
came both ways. Events from another process (scale-out) may be missed or come out of turn: a seq past the next
one, or a `resync` from the bus, fills in from the log, while newer events wait their turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from oldphoto.jobs import announcements
from oldphoto.jobs.service import JobService
from oldphoto.protocol import JobEvent, LiveMetrics, LivePlace, OutEvent
from oldphoto.server.outbox import Outbox

History = Callable[[str, int], Awaitable[list[JobEvent]]]  # (job id, after seq) -> the recorded events after it


class Follower:
    def __init__(self, job_id: str, outbox: Outbox, last_seq: int, history: History, *, metrics: bool = False) -> None:
        self.job_id = job_id
        self.metrics = metrics  # the reader asked for the job's live metrics
        self.outbox = outbox
        self.last_seq = last_seq
        self.history = history
        self.waiting = True  # not started as far as this reader knows: a live place may still be news
        self.ended = False  # its final event was sent: no live event is news any more
        self.progress = 0
        self.position: int | None = None
        self.message_key: str | None = None
        self._held: list[JobEvent] = []  # newer events that wait while the log is read
        self._held_place: LivePlace | None = None
        self._resync: asyncio.Task[None] | None = None
        self._again = False

    def deliver(self, event: OutEvent) -> None:
        if isinstance(event, LivePlace):
            self._place(event)
        elif isinstance(event, LiveMetrics):
            self._metrics(event)
        elif self._resync is not None:
            self._held.append(event)
        elif event.seq > self.last_seq + 1:
            self._held.append(event)
            self.resync()
        elif event.seq > self.last_seq:
            self._emit(event)

    def resync(self) -> None:
        """Fill in from the durable log, off the loop; whatever arrives meanwhile waits its turn."""
        if self._resync is not None:
            self._again = True
            return
        self._resync = asyncio.get_running_loop().create_task(self._fill_in())

    async def catch_up(self) -> None:
        """The first replay (or the one under way), to its end."""
        if self._resync is None:
            self.resync()
        while self._resync is not None:
            await asyncio.shield(self._resync)

    def close(self) -> None:
        if self._resync is not None:
            self._resync.cancel()

    async def _fill_in(self) -> None:
        try:
            while True:
                self._again = False
                for event in await self.history(self.job_id, self.last_seq):
                    if event.seq > self.last_seq:
                        self._emit(event)
                if not self._release_held() and not self._again:
                    break
        finally:
            self._resync = None
        if self._held_place is not None:
            place, self._held_place = self._held_place, None
            self._place(place)

    def _release_held(self) -> bool:
        """Send what waited, in seq order, up to a gap; True when a gap is left (the log is read again)."""
        held, self._held = sorted(self._held, key=lambda e: e.seq), []
        for i, event in enumerate(held):
            if event.seq > self.last_seq + 1:
                self._held = held[i:]
                return True
            if event.seq > self.last_seq:
                self._emit(event)
        return False

    def _emit(self, event: JobEvent) -> None:
        self.last_seq = event.seq
        self.progress = max(self.progress, event.progress)
        self.waiting = event.stage in announcements.WAITING_STAGES and not event.is_final
        self.ended = event.is_final
        self.position = event.position if event.type == "queued" else None
        self.message_key = event.message_key
        self.outbox.deliver(event)

    def _metrics(self, event: LiveMetrics) -> None:
        """News while the job runs as far as this reader knows; one that comes while the log is read is let go (the
        next comes a second later), so it never overtakes the recorded events it follows."""
        if self.metrics and self._resync is None and not self.waiting and not self.ended:
            self.outbox.deliver(event.for_reader(max(1, self.last_seq)))

    def _place(self, event: LivePlace) -> None:
        """A live place: news only while the job waits, and only when it differs from what this reader has."""
        if self._resync is not None:
            self._held_place = event
            return
        if not self.waiting or (event.position == self.position and event.message_key == self.message_key):
            return
        self.position, self.message_key = event.position, event.message_key
        self.outbox.deliver(LivePlace(event.job_id, event.position, event.ts, max(1, self.last_seq), self.progress, event.message_key))


async def follow(service: JobService, job_id: str, after_seq: int, outbox: Outbox, *, metrics: bool = False) -> Follower:
    """Subscribe, replay the log after `after_seq`, then the job's current place if it waits. `metrics`: its live
    metrics too, while it runs."""
    follower = Follower(job_id, outbox, after_seq, service.events_after, metrics=metrics)
    service.bus.subscribe(job_id, follower)
    try:
        await follower.catch_up()
    except BaseException:
        unfollow(service, follower)
        raise
    position = service.position(job_id)
    if position is not None:
        follower.deliver(service.place_event(job_id, position))
    return follower


def unfollow(service: JobService, follower: Follower) -> None:
    follower.close()
    service.bus.unsubscribe(follower.job_id, follower)
