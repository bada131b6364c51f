"""Job events between processes over Redis pub/sub, one channel per job, heard by each web node through one pattern.

Pub/sub delivers at most once, so it is never trusted alone: every event is in the durable log before it is
published (the store assigns its seq), a follower reads the log after subscribing here (server/follow.py), and a
subscriber that may have missed something is told to `resync` from the log: after a lost Redis connection is
restored, and when a seq arrives out of turn. Subscribers drop what they already have by seq.

A web node listens to every job's channel through one pattern subscription, made when it starts, and passes on
only what its own followers follow (the job id is in the channel's name: nothing else is parsed). A subscription
per job cost a Redis round trip per new follower, one after another, and a second read of the log when Redis
confirmed it: with 10,000 followers arriving at once, a web node spent half a minute on it (docs/benchmarks.md).

A running job's live metrics (never recorded) go on a channel of their own per job, heard through a second pattern:
at most once, as live events are anyway; the next one comes a second later.

`RedisBus` is the asyncio side, used by web nodes: it delivers to the process's own subscribers at once and
forwards to Redis in publish order. `RedisPublisher` is the blocking side, for worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
import redis.asyncio as aioredis

from oldphoto.jobs.bus import LocalBus, Subscriber
from oldphoto.protocol import JobEvent, LiveMetrics, LivePlace, Usage

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "oldphoto"
RECONNECT_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 2.0)


CANCEL = "cancel"  # the channel after the prefix that carries job ids to cancel wherever they run
QUEUE = "queue"  # the channel after the prefix that says the shared queue moved (the Unix time it did)


def channel(prefix: str, job_id: str) -> str:
    return f"{prefix}:events:{job_id}"


def metrics_channel(prefix: str, job_id: str) -> str:
    return f"{prefix}:metrics:{job_id}"


def metrics_pattern(prefix: str) -> str:
    return f"{prefix}:metrics:*"


def events_pattern(prefix: str) -> str:
    """Every job's channel. A prefix holds no glob characters (settings: `broker_prefix`)."""
    return f"{prefix}:events:*"


def cancel_channel(prefix: str) -> str:
    return f"{prefix}:{CANCEL}"


def queue_channel(prefix: str) -> str:
    return f"{prefix}:{QUEUE}"


class RedisPublisher:
    """Publishes recorded events from a process without an event loop (a worker)."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self.redis = redis.Redis.from_url(url, client_name=f"{prefix}:worker")

    def publish(self, event: JobEvent) -> None:
        try:
            self.redis.publish(channel(self.prefix, event.job_id), event.model_dump_json())
        except redis.RedisError as exc:  # the event is recorded; readers find it in the log
            log.warning("could not publish event %s/%s to Redis: %s", event.job_id, event.seq, exc, extra={"job_id": event.job_id})

    def tell(self, event: LiveMetrics) -> None:
        """A running job's metrics, to whichever web node has its followers."""
        try:
            self.redis.publish(metrics_channel(self.prefix, event.job_id), event.usage.model_dump_json(exclude_none=True))
        except redis.RedisError as exc:  # live only: the next sample comes in a second
            log.debug("could not publish metrics of %s to Redis: %s", event.job_id, exc, extra={"job_id": event.job_id})

    def queue_moved(self, at: float) -> None:
        """Tell every web node that the shared queue moved: each works out its followers' places itself."""
        try:
            self.redis.publish(queue_channel(self.prefix), repr(at))
        except redis.RedisError as exc:  # the places are right again at the next move
            log.warning("could not publish a queue move to Redis: %s", exc)

    def close(self) -> None:
        self.redis.close()


class RedisBus:
    """The bus of a web node: its own subscribers, fed by every process's events."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self.local = LocalBus()
        self._redis: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._commands: asyncio.Queue[tuple[str, str]] = asyncio.Queue()  # (channel, message) to publish, in order
        self._tasks: list[asyncio.Task[None]] = []
        self._control = f"{prefix}:bus"  # always subscribed, so the reader always has a subscription to listen on
        self._queue = queue_channel(prefix)
        self._metrics = metrics_pattern(prefix)
        self.on_queue_moved: Callable[[float], None] | None = None
        self.listening = asyncio.Event()  # every job's channel is heard (the pattern subscription is confirmed)

    async def start(self) -> None:
        self._redis = aioredis.Redis.from_url(self.url, client_name=f"{self.prefix}:web")  # named in CLIENT LIST
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(self._control, self._queue)
        await self._pubsub.psubscribe(self._metrics, events_pattern(self.prefix))  # the events' confirmation comes last
        self._tasks = [asyncio.create_task(self._send_loop()), asyncio.create_task(self._read_loop())]
        await asyncio.wait_for(self.listening.wait(), timeout=30)  # no follower before this node hears events

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    # -- the LocalBus interface ---------------------------------------------------------------------------------

    def subscribe(self, job_id: str, subscriber: Subscriber) -> None:
        self.local.subscribe(job_id, subscriber)  # every job's events already arrive here (the pattern)

    def unsubscribe(self, job_id: str, subscriber: Subscriber) -> None:
        self.local.unsubscribe(job_id, subscriber)

    def publish(self, event: JobEvent) -> None:
        self.local.publish(event)  # this node's readers at once; Redis brings it to the others
        self._commands.put_nowait((channel(self.prefix, event.job_id), event.model_dump_json()))

    def tell(self, event: LivePlace | LiveMetrics) -> None:
        self.local.tell(event)

    def followed_jobs(self) -> Iterable[str]:
        return self.local.followed_jobs()

    def queue_moved(self, at: float) -> None:
        """This node moved the shared queue: the other nodes hear it through Redis."""
        self.send(QUEUE, repr(at))

    def send(self, name: str, data: str) -> None:
        """Publish other words than events (a cancel request), in order with the events."""
        self._commands.put_nowait((f"{self.prefix}:{name}", data))

    @property
    def subscription_count(self) -> int:
        return self.local.subscription_count

    # -- Redis ---------------------------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        """Publishes strictly in the order asked for."""
        assert self._redis is not None
        while True:
            name, data = await self._commands.get()
            for delay in (*RECONNECT_DELAYS_S, None):
                try:
                    await self._redis.publish(name, data)
                    break
                except (redis.RedisError, OSError) as exc:
                    if delay is None:  # readers still find the event in the log
                        log.warning("Redis publish to %s failed: %s", name, exc)
                        break
                    await asyncio.sleep(delay)

    async def _read_loop(self) -> None:
        attempt = 0
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
                attempt = 0
            except (redis.RedisError, OSError) as exc:
                delay = RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)]
                attempt += 1
                log.warning("Redis events: %s; reconnecting in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        name = _text(message.get("channel"))
        kind = message["type"]
        if kind == "pmessage":
            job_id = _job_of(name)
            if not self.local.has_subscribers(job_id):  # another node's follower: not parsed here
                return
            if _text(message.get("pattern")) == self._metrics:
                self._tell_metrics(job_id, message["data"])
            else:
                self._deliver(name, message["data"])
        elif kind == "psubscribe" and name == self._metrics:
            pass
        elif kind == "psubscribe":  # (re)connected: what was published meanwhile is in the log
            self.listening.set()
            for job_id in list(self.local.followed_jobs()):
                for subscriber in self.local.subscribers(job_id):
                    subscriber.resync()
        elif name == self._queue and kind == "message" and self.on_queue_moved is not None:
            self.on_queue_moved(_moment(message["data"]))

    def _deliver(self, name: str, data: bytes | str) -> None:
        try:
            event = JobEvent.model_validate_json(data)
        except ValueError:
            log.warning("dropped a malformed event on %s", name)
            return
        self.local.publish(event)


    def _tell_metrics(self, job_id: str, data: bytes | str) -> None:
        try:
            usage = Usage.model_validate_json(data)
        except ValueError:
            log.warning("dropped malformed metrics of %s", job_id)
            return
        self.local.tell(LiveMetrics(job_id, usage, time.time()))


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _moment(data: bytes | str) -> float:
    try:
        return float(_text(data))
    except ValueError:
        return time.time()


def _job_of(name: str) -> str:
    return name.rsplit(":", 1)[-1]
