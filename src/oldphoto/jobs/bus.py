"""Fan-out of recorded events to whoever follows a job on this process (WebSocket connections, SSE streams)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

from oldphoto.protocol import JobEvent, LiveMetrics, LivePlace, OutEvent


class Subscriber(Protocol):
    def deliver(self, event: OutEvent) -> None:
        """Must not block: a slow reader may never slow the publisher."""

    def resync(self) -> None:
        """Events may have been missed (a bus across processes says so): fill in from the durable log."""


class Bus(Protocol):
    """Where recorded events go to be heard: `LocalBus` in one process, `distributed.events.RedisBus` across many."""

    def subscribe(self, job_id: str, subscriber: Subscriber) -> None: ...
    def unsubscribe(self, job_id: str, subscriber: Subscriber) -> None: ...
    def publish(self, event: JobEvent) -> None: ...
    def tell(self, event: LivePlace | LiveMetrics) -> None:
        """A live event to this process's followers only: a place (every process works out its own), or metrics (a
        bus across processes brings another process's to its followers itself)."""

    def followed_jobs(self) -> Iterable[str]: ...

    @property
    def subscription_count(self) -> int: ...


class LocalBus:
    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[Subscriber]] = defaultdict(set)

    def subscribe(self, job_id: str, subscriber: Subscriber) -> None:
        self._subscribers[job_id].add(subscriber)

    def unsubscribe(self, job_id: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(job_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[job_id]

    def has_subscribers(self, job_id: str) -> bool:
        return job_id in self._subscribers

    def subscribers(self, job_id: str) -> tuple[Subscriber, ...]:
        return tuple(self._subscribers.get(job_id, ()))

    def publish(self, event: JobEvent) -> None:
        for subscriber in tuple(self._subscribers.get(event.job_id, ())):
            subscriber.deliver(event)

    def tell(self, event: LivePlace | LiveMetrics) -> None:
        for subscriber in tuple(self._subscribers.get(event.job_id, ())):
            subscriber.deliver(event)

    def followed_jobs(self) -> Iterable[str]:
        return self._subscribers.keys()

    @property
    def subscription_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())
