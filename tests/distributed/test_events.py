"""Events between processes over a real Redis: heard on every node, in order, and never lost, because whatever
pub/sub misses is filled in from the durable log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from oldphoto.distributed.events import RedisBus, RedisPublisher
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.store import JobStore, NewJob
from oldphoto.protocol import JobEvent, LiveMetrics, Speed, Usage
from oldphoto.server.follow import Follower
from oldphoto.server.outbox import Outbox
from tests.distributed.test_worker import history
from tests.helpers.server import run_async
from tests.helpers.services import redis_namespace

pytestmark = pytest.mark.scaleout


@pytest.fixture
def namespace() -> Iterator[tuple[str, str]]:
    with redis_namespace() as found:
        yield found


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    yield store
    store.close()


class Recorder:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self.resyncs = 0

    def deliver(self, event: JobEvent) -> None:
        self.events.append(event)

    def resync(self) -> None:
        self.resyncs += 1


def event(job: str, seq: int) -> JobEvent:
    return JobEvent(job_id=job, seq=seq, type="progress", stage="inference", message_key="inference", progress=seq)


async def until(condition: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.01)


def test_an_event_published_on_one_node_is_heard_on_another_and_at_once_on_its_own(namespace: tuple[str, str]) -> None:
    url, prefix = namespace

    async def scenario() -> tuple[list[int], list[int], int]:
        first, second = RedisBus(url, prefix), RedisBus(url, prefix)
        await first.start()
        await second.start()
        here, there = Recorder(), Recorder()
        first.subscribe("job", here)
        second.subscribe("job", there)
        assert second.listening.is_set() and there.resyncs == 0  # started: it hears every job's channel already
        for seq in range(1, 6):
            first.publish(event("job", seq))
        heard_at_once = [e.seq for e in here.events]
        await until(lambda: len(there.events) == 5)
        await asyncio.sleep(0.1)
        await first.stop()
        await second.stop()
        return heard_at_once, [e.seq for e in there.events], len(here.events)

    at_once, there, here_total = run_async(scenario())
    assert at_once == [1, 2, 3, 4, 5]
    assert there == [1, 2, 3, 4, 5]
    assert here_total in (5, 10)  # its own events may come back from Redis too; a Follower drops them by seq


def test_a_workers_events_reach_the_web_nodes_subscribers(namespace: tuple[str, str]) -> None:
    url, prefix = namespace

    async def scenario() -> list[int]:
        bus = RedisBus(url, prefix)
        await bus.start()
        heard = Recorder()
        bus.subscribe("job", heard)
        publisher = RedisPublisher(url, prefix)
        await asyncio.to_thread(lambda: [publisher.publish(event(job, seq)) for seq in (1, 2, 3) for job in ("job", "elsewhere")])
        publisher.close()
        await until(lambda: len(heard.events) == 3)
        bus.unsubscribe("job", heard)
        await asyncio.sleep(0.1)
        subscribed = (len(bus._pubsub.channels), len(bus._pubsub.patterns))
        await bus.stop()
        return [e.seq for e in heard.events if e.job_id == "job"] + [len(heard.events), *subscribed]

    # Another job's events are not passed on; the same subscriptions per node whatever it follows: control, queue
    # moves, and the patterns of every job's events and every job's live metrics.
    assert run_async(scenario()) == [1, 2, 3, 3, 2, 2]


def test_what_pub_sub_missed_comes_from_the_log_in_order(namespace: tuple[str, str], store: JobStore) -> None:
    """A follower subscribing while the job runs elsewhere, and an event lost on the way: nothing is missing."""
    url, prefix = namespace
    job = store.create(NewJob(owner="u", workflow="{}", input_path="x"), event("pending", 1).model_copy(update={"stage": "upload"}))
    store.set_status(job.id, JobStatus.RUNNING)
    recorded = [store.append(job.id, {"type": "progress", "stage": "inference", "message_key": "inference", "progress": p}) for p in (10, 20, 30, 40)]

    async def scenario() -> list[int]:
        bus = RedisBus(url, prefix)
        await bus.start()
        outbox = Outbox()
        follower = Follower(job.id, outbox, 0, history(store))
        bus.subscribe(job.id, follower)
        await follower.catch_up()  # as server/follow.py does: subscribed first, then the log
        assert len(outbox) == 5
        publisher = RedisPublisher(url, prefix)
        later = [store.append(job.id, {"type": "progress", "stage": "inference", "message_key": "inference", "progress": p}) for p in (50, 60, 70)]
        publisher.publish(later[0])
        publisher.publish(later[2])  # seq 7 never published: seq 8 arriving makes the follower read it from the log
        publisher.close()
        await until(lambda: len(outbox) == 8)
        await bus.stop()
        return [e.seq for e in outbox.items]

    assert recorded[-1].seq == 5
    assert run_async(scenario()) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_after_a_lost_redis_connection_subscribers_resync_and_hear_again(namespace: tuple[str, str]) -> None:
    url, prefix = namespace

    async def scenario() -> tuple[int, list[int]]:
        bus = RedisBus(url, prefix)
        await bus.start()
        heard = Recorder()
        bus.subscribe("job", heard)
        admin = redis.Redis.from_url(url)
        ours = [c["id"] for c in admin.client_list(_type="pubsub") if c["name"] == f"{prefix}:web"]
        assert len(ours) == 1
        await asyncio.to_thread(admin.client_kill_filter, _id=ours[0])
        await until(lambda: heard.resyncs == 1, timeout=10)  # listening again after reconnecting: told to resync
        await asyncio.to_thread(admin.publish, f"{prefix}:events:job", event("job", 9).model_dump_json())
        await until(lambda: len(heard.events) == 1)
        admin.close()
        await bus.stop()
        return heard.resyncs, [e.seq for e in heard.events]

    assert run_async(scenario()) == (1, [9])


def test_a_worker_nodes_live_metrics_reach_the_web_node_that_follows_the_job_and_no_other(namespace: tuple[str, str]) -> None:
    url, prefix = namespace
    usage = Usage(elapsed_s=1.0, rss_bytes=2**28, peak_rss_bytes=2**29, speed=Speed(node="1", unit="tile", done=2, total=8, seconds=1.0, per_s=2.0))

    async def scenario() -> tuple[list[object], list[object]]:
        follows, other = RedisBus(url, prefix), RedisBus(url, prefix)
        await follows.start()
        await other.start()
        heard, elsewhere = Recorder(), Recorder()
        follows.subscribe("job", heard)
        other.subscribe("another", elsewhere)
        publisher = RedisPublisher(url, prefix)
        await asyncio.to_thread(publisher.tell, LiveMetrics("job", usage, 0.0))
        await asyncio.to_thread(publisher.publish, event("job", 1))  # after it on the same connection
        publisher.close()
        await until(lambda: len(heard.events) == 2)
        await asyncio.sleep(0.1)
        for bus in (follows, other):
            await bus.stop()
        return heard.events, elsewhere.events  # type: ignore[return-value]

    heard, elsewhere = run_async(scenario())
    assert isinstance(heard[0], LiveMetrics) and heard[0].usage == usage and heard[0].job_id == "job"
    assert isinstance(heard[1], JobEvent) and elsewhere == []
