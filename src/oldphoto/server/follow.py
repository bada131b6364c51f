from __future__ import annotations

from oldphoto.jobs.service import JobService
from oldphoto.protocol import JobEvent
from oldphoto.server.outbox import Outbox


class Follower:
    """One reader following one job: every event after `last_seq`, each exactly once."""

    def __init__(self, job_id: str, outbox: Outbox, last_seq: int) -> None:
        self.job_id = job_id
        self.outbox = outbox
        self.last_seq = last_seq

    def deliver(self, event: JobEvent) -> None:
        if event.seq > self.last_seq:
            self.last_seq = event.seq
            self.outbox.deliver(event)


def follow(service: JobService, job_id: str, after_seq: int, outbox: Outbox) -> Follower:
    """Replay the durable log, then go live.

    Runs with no await inside, on the loop that records and publishes every event, so nothing can be published
    between the replay and the subscription: no gap and no duplicate.
    """
    follower = Follower(job_id, outbox, after_seq)
    for event in service.events_after(job_id, after_seq):
        follower.deliver(event)
    service.bus.subscribe(job_id, follower)
    return follower


def unfollow(service: JobService, follower: Follower) -> None:
    service.bus.unsubscribe(follower.job_id, follower)
