from __future__ import annotations

from collections.abc import Callable

from oldphoto.jobs.service import JobService
from oldphoto.protocol import JobEvent
from oldphoto.server.outbox import Outbox

History = Callable[[str, int], list[JobEvent]]  # (job id, after seq) -> the recorded events after it


class Follower:
    """One reader following one job: every event after `last_seq`, each exactly once, in order.

    Events from another process (scale-out) may be missed or come out of turn; a seq past the next one, or a
    `resync` from the bus, fills in from the durable log first.
    """

    def __init__(self, job_id: str, outbox: Outbox, last_seq: int, history: History | None = None) -> None:
        self.job_id = job_id
        self.outbox = outbox
        self.last_seq = last_seq
        self.history = history

    def deliver(self, event: JobEvent) -> None:
        if event.seq > self.last_seq + 1 and self.history is not None:
            self.resync()
        if event.seq > self.last_seq:
            self.last_seq = event.seq
            self.outbox.deliver(event)

    def resync(self) -> None:
        if self.history is None:
            return
        for event in self.history(self.job_id, self.last_seq):
            if event.seq > self.last_seq:
                self.last_seq = event.seq
                self.outbox.deliver(event)


def follow(service: JobService, job_id: str, after_seq: int, outbox: Outbox) -> Follower:
    """Replay the durable log, then go live.

    Runs with no await inside, on the loop that records and publishes every event, so nothing this process
    publishes can come between the replay and the subscription: no gap and no duplicate. (Other processes' events
    reach it through the bus, which resyncs from the log where they could have been missed.)
    """
    follower = Follower(job_id, outbox, after_seq, service.events_after)
    follower.resync()
    service.bus.subscribe(job_id, follower)
    return follower


def unfollow(service: JobService, follower: Follower) -> None:
    service.bus.unsubscribe(follower.job_id, follower)
