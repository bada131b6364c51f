"""A follower reads the log off the loop, yet every recorded event reaches its reader exactly once and in order,
and a live place reaches it only while the job waits."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

from oldphoto.jobs import announcements
from oldphoto.protocol import JobEvent, LiveMetrics, LivePlace, Usage
from oldphoto.server.follow import Follower
from oldphoto.server.outbox import Outbox


def event(seq: int, stage: str = "inference", **extra: object) -> JobEvent:
    return JobEvent(job_id="j", seq=seq, stage=stage, message_key=stage, progress=min(seq * 10, 100), **extra)  # type: ignore[arg-type]


def place(position: int) -> LivePlace:
    return LivePlace("j", position, time.time())


class SlowLog:
    """The durable log, read off the loop: events recorded while a read is under way are not in it."""

    def __init__(self, events: list[JobEvent]) -> None:
        self.events = events
        self.reads = 0
        self.gate = asyncio.Event()

    async def __call__(self, job_id: str, after: int) -> list[JobEvent]:
        snapshot = [e for e in self.events if e.seq > after]
        self.reads += 1
        await self.gate.wait()
        return snapshot


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    return functools.wraps(test)(lambda: asyncio.run(test()))


def drain(outbox: Outbox) -> list[JobEvent]:
    got = list(outbox.items)
    outbox.items.clear()
    return got


@in_loop
async def test_events_recorded_during_the_replay_arrive_once_and_in_order() -> None:
    log = SlowLog([event(1), event(2)])
    outbox = Outbox()
    follower = Follower("j", outbox, 0, log)
    follower.resync()
    await asyncio.sleep(0)
    follower.deliver(event(2))  # recorded before the read, published after the subscription: comes both ways
    for seq in (3, 4):  # recorded after the read began
        log.events.append(event(seq))
        follower.deliver(event(seq))
    log.gate.set()
    await follower.catch_up()
    assert [e.seq for e in drain(outbox)] == [1, 2, 3, 4]


@in_loop
async def test_a_gap_is_filled_from_the_log_before_newer_events() -> None:
    log = SlowLog([event(s) for s in range(1, 6)])
    log.gate.set()
    outbox = Outbox()
    follower = Follower("j", outbox, 2, log)
    follower.deliver(event(3))
    follower.deliver(event(6))  # 4 and 5 were missed on the way
    await follower.catch_up()
    assert [e.seq for e in drain(outbox)] == [3, 4, 5, 6]
    assert log.reads == 1


@in_loop
async def test_a_live_place_carries_the_last_seq_and_progress_and_only_news() -> None:
    log = SlowLog([])
    log.gate.set()
    outbox = Outbox()
    follower = Follower("j", outbox, 0, log)
    follower.deliver(event(1, "upload"))
    follower.deliver(JobEvent.model_validate({**announcements.queued(5, 7), "job_id": "j", "seq": 2}))
    follower.deliver(place(5))  # the place it has: nothing new
    follower.deliver(place(4))
    follower.deliver(place(4))
    told = drain(outbox)
    assert [(e.seq, e.position, bool(e.live)) for e in told] == [(1, None, False), (2, 5, False), (2, 4, True)]
    assert told[-1].progress == 10  # never below what the reader was shown
    assert '"seq": 2' in told[-1].wire_text() and '"live": true' in told[-1].wire_text()


@in_loop
async def test_a_live_place_after_the_job_started_is_dropped() -> None:
    log = SlowLog([])
    log.gate.set()
    outbox = Outbox()
    follower = Follower("j", outbox, 0, log)
    follower.deliver(event(1, "upload"))
    follower.deliver(event(2, "preprocess"))
    follower.deliver(place(1))  # worked out just before the job started
    assert [e.seq for e in drain(outbox)] == [1, 2]


@in_loop
async def test_a_live_place_during_the_replay_waits_for_it() -> None:
    log = SlowLog([event(1, "upload"), JobEvent.model_validate({**announcements.queued(9, 0), "job_id": "j", "seq": 2})])
    outbox = Outbox()
    follower = Follower("j", outbox, 0, log)
    follower.resync()
    await asyncio.sleep(0)
    follower.deliver(place(3))
    log.gate.set()
    await follower.catch_up()
    assert [(e.seq, e.position) for e in drain(outbox)] == [(1, None), (2, 9), (2, 3)]


def test_a_live_place_has_the_wire_shape_of_a_recorded_queued_event_plus_live() -> None:
    for lang in ("en", "zh-CN"):
        for key in ("queued", "queued.no_worker"):
            live = LivePlace("j", 7, 1234.5, seq=3, progress=12, message_key=key)
            recorded = JobEvent.model_validate({**announcements.queued(7, 12), "message_key": key, "job_id": "j", "seq": 3, "ts": 1234.5})
            wire = json.loads(live.wire_text(lang))
            assert wire == {**recorded.to_wire(lang), "live": True}
            assert list(wire) == [*(k for k in recorded.to_wire(lang) if k != "message"), "live", "message"]


class Bus:
    def __init__(self) -> None:
        self.followers: list[tuple[str, object]] = []

    def subscribe(self, job_id: str, follower: object) -> None:
        self.followers.append((job_id, follower))

    def unsubscribe(self, job_id: str, follower: object) -> None:
        self.followers.remove((job_id, follower))


class Service:
    """What `follow` uses of a JobService: its bus, its log, and the live place of a waiting job."""

    def __init__(self, log: SlowLog, position: int | None) -> None:
        self.bus = Bus()
        self.events_after = log
        self._position = position

    def position(self, job_id: str) -> int | None:
        return self._position if job_id == "j" else None

    def place_event(self, job_id: str, position: int) -> LivePlace:
        assert job_id == "j"
        return LivePlace(job_id, position, 0.0)


@in_loop
async def test_follow_subscribes_replays_after_the_seq_then_tells_the_place_and_unfollow_lets_go() -> None:
    from oldphoto.server.follow import follow, unfollow

    queued = JobEvent.model_validate({**announcements.queued(5, 7), "job_id": "j", "seq": 2})
    log = SlowLog([event(1, "upload"), queued])
    log.gate.set()
    service = Service(log, position=4)
    outbox = Outbox()
    follower = await follow(service, "j", 1, outbox)  # type: ignore[arg-type]
    assert service.bus.followers == [("j", follower)]
    assert [(e.seq, e.position, bool(e.live)) for e in drain(outbox)] == [(2, 5, False), (2, 4, True)]
    unfollow(service, follower)  # type: ignore[arg-type]
    assert service.bus.followers == []


@in_loop
async def test_follow_tells_no_place_for_a_job_that_does_not_wait_and_lets_go_when_the_replay_fails() -> None:
    from oldphoto.server.follow import follow

    log = SlowLog([event(1, "upload"), event(2, "preprocess")])
    log.gate.set()
    service = Service(log, position=None)
    outbox = Outbox()
    await follow(service, "j", 0, outbox)  # type: ignore[arg-type]
    assert [(e.seq, bool(e.live)) for e in drain(outbox)] == [(1, False), (2, False)]

    async def broken(job_id: str, after: int) -> list[JobEvent]:
        raise OSError("the log is gone")

    failing = Service(log, position=None)
    failing.events_after = broken  # type: ignore[assignment]
    try:
        await follow(failing, "j", 0, Outbox())  # type: ignore[arg-type]
    except OSError:
        pass
    else:
        raise AssertionError("a failed replay was swallowed")
    assert failing.bus.followers == []


@in_loop
async def test_closing_a_follower_stops_a_replay_under_way() -> None:
    log = SlowLog([event(1)])  # its gate never opens
    follower = Follower("j", Outbox(), 0, log)
    follower.resync()
    await asyncio.sleep(0)
    task = follower._resync
    follower.close()
    await asyncio.sleep(0)
    assert task is not None and task.cancelled()


@in_loop
async def test_a_place_is_news_when_its_words_change_and_a_seq_already_shown_is_not() -> None:
    log = SlowLog([])
    log.gate.set()
    outbox = Outbox()
    follower = Follower("j", outbox, 2, log)  # a reader resuming after the queued event it was shown
    follower.deliver(LivePlace("j", 5, 42.5))  # nothing shown since: still waiting, so its place is news
    first = drain(outbox)
    follower.deliver(LivePlace("j", 5, 43.0, message_key="queued.no_worker"))  # same place, new words
    second = drain(outbox)
    follower.deliver(LivePlace("j", 5, 44.0, message_key="queued.no_worker"))  # nothing new
    follower.deliver(event(2))  # already shown
    follower.deliver(event(3, "upload"))
    follower.deliver(event(3, "upload"))  # twice on the way: once to the reader
    told = [*first, *second, *drain(outbox)]
    assert [(e.seq, e.position, e.message_key, e.ts) for e in told[:2]] == [(2, 5, "queued", 42.5), (2, 5, "queued.no_worker", 43.0)]
    assert [e.seq for e in told[2:]] == [3]


@in_loop
async def test_a_resync_asked_for_during_a_replay_reads_the_log_again() -> None:
    log = SlowLog([event(1)])
    outbox = Outbox()
    follower = Follower("j", outbox, 0, log)
    follower.resync()
    await asyncio.sleep(0)
    log.events.append(event(2))  # recorded after the first read began, its publication lost
    follower.resync()  # the bus says it missed something
    log.gate.set()
    await follower.catch_up()
    assert [e.seq for e in drain(outbox)] == [1, 2] and log.reads == 2


@in_loop
async def test_a_live_place_equal_to_the_recorded_one_is_not_news_and_one_before_any_event_has_seq_1() -> None:
    log = SlowLog([])
    log.gate.set()
    outbox = Outbox()
    follower = Follower("j", outbox, 0, log)
    follower.deliver(place(3))  # before any event reached this reader
    assert [(e.seq, e.position) for e in drain(outbox)] == [(1, 3)]
    follower.deliver(event(1, "upload"))
    follower.deliver(JobEvent.model_validate({**announcements.queued(5, 7), "job_id": "j", "seq": 2}))
    drain(outbox)
    follower.deliver(place(5))  # what the recorded queued event said: nothing new
    assert drain(outbox) == []


def metrics(elapsed_s: float = 1.0) -> LiveMetrics:
    return LiveMetrics("j", Usage(elapsed_s=elapsed_s, rss_bytes=2**27, peak_rss_bytes=2**28), time.time())


@in_loop
async def test_live_metrics_reach_a_reader_who_asked_only_while_the_job_runs_with_its_last_seq() -> None:
    log = SlowLog([event(1, "upload"), event(2, "preprocess")])
    log.gate.set()
    asked, not_asked = Outbox(), Outbox()
    got: dict[Outbox, list[Any]] = {asked: [], not_asked: []}
    readers = [Follower("j", asked, 0, log, metrics=True), Follower("j", not_asked, 0, log)]
    for reader in readers:
        steps = [metrics(1.0), event(3, "inference"), metrics(2.0), event(4, "complete", type="complete"), metrics(3.0)]
        reader.deliver(metrics(0.5))  # the log is being read: let go, never ahead of the events it follows
        await reader.catch_up()
        for step in steps:  # the last one: the job ended as far as this reader knows
            reader.deliver(step)
            got[reader.outbox] += drain(reader.outbox)  # a reader that keeps up
    assert [(e.seq, e.type, bool(e.live)) for e in got[asked]] == [
        (1, "progress", False), (2, "progress", False), (2, "metrics", True), (3, "progress", False), (3, "metrics", True), (4, "complete", False),
    ]
    assert [e.usage.elapsed_s for e in got[asked] if isinstance(e, LiveMetrics)] == [1.0, 2.0]
    assert [e.seq for e in got[not_asked]] == [1, 2, 3, 4] and not any(e.live for e in got[not_asked])


@in_loop
async def test_no_metrics_while_a_job_waits_and_a_slow_readers_outbox_keeps_the_newest() -> None:
    queued = JobEvent.model_validate({**announcements.queued(2, 0), "job_id": "j", "seq": 2})
    log = SlowLog([event(1, "upload"), queued])
    log.gate.set()
    outbox = Outbox()
    reader = Follower("j", outbox, 0, log, metrics=True)
    await reader.catch_up()
    reader.deliver(metrics(0.1))  # a sample of a job that has not started here: stale news
    reader.deliver(event(3, "preprocess"))
    for elapsed in (1.0, 2.0, 3.0):
        reader.deliver(metrics(elapsed))
    told = [e for e in drain(outbox) if e.live]
    assert [e.usage.elapsed_s for e in told] == [3.0]  # type: ignore[union-attr]
    wire = json.loads(told[0].wire_text())
    assert wire == {"type": "metrics", "job_id": "j", "seq": 3, "ts": wire["ts"], "live": True, "metrics": {"elapsed_s": 3.0, "rss_bytes": 2**27, "peak_rss_bytes": 2**28}}
