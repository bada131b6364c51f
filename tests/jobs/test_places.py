"""Queue places are live: many moves cost one pass, only followed jobs whose place changed are told, and when no
worker runs, the waiting hear it."""

from __future__ import annotations

import asyncio
import time

from oldphoto.jobs.bus import LocalBus
from oldphoto.jobs.places import Places
from oldphoto.protocol import JobEvent


class Reader:
    def __init__(self) -> None:
        self.heard: list[JobEvent] = []

    def deliver(self, event: JobEvent) -> None:
        self.heard.append(event)


def test_moves_are_coalesced_and_only_changed_followed_places_are_told() -> None:
    async def scenario() -> None:
        bus, reads = LocalBus(), []
        positions = {"a": 1, "b": 2, "c": 3}

        async def read() -> dict[str, int]:
            reads.append(dict(positions))
            return dict(positions)

        async def workers() -> bool:
            return True

        places = Places(bus, read, workers, interval_s=0.05)
        a, b = Reader(), Reader()
        bus.subscribe("a", a)
        bus.subscribe("b", b)  # "c" has nobody following it on this process
        places.start()
        await asyncio.sleep(0.02)
        assert [e.position for e in a.heard] == [1] and [e.position for e in b.heard] == [2]
        del positions["a"]
        positions.update(b=1, c=2)
        moved = time.time()
        for _ in range(50):  # a burst of moves: one pass after the interval
            places.moved(moved)
        await asyncio.sleep(0.12)
        assert len(reads) == 2
        assert [e.position for e in b.heard] == [2, 1] and len(a.heard) == 1
        assert b.heard[-1].live and b.heard[-1].ts == moved and places.position("b") == 1
        await places.stop()

    asyncio.run(scenario())


def test_with_no_worker_running_every_waiting_job_is_told_so() -> None:
    async def scenario() -> None:
        bus, running = LocalBus(), [True]

        async def read() -> dict[str, int]:
            return {"a": 1}

        async def workers() -> bool:
            return running[0]

        places = Places(bus, read, workers, interval_s=0.01, workers_check_s=0.02)
        a = Reader()
        bus.subscribe("a", a)
        places.start()
        await asyncio.sleep(0.05)
        running[0] = False
        await asyncio.sleep(0.1)
        assert [e.message_key for e in a.heard] == ["queued", "queued.no_worker"]
        assert "No worker is running" in a.heard[-1].message()
        running[0] = True
        await asyncio.sleep(0.1)
        assert a.heard[-1].message_key == "queued"
        await places.stop()

    asyncio.run(scenario())


def test_each_place_carries_the_wait_worked_out_in_its_pass() -> None:
    async def scenario() -> None:
        bus = LocalBus()

        async def read() -> dict[str, int]:
            return {"a": 1, "b": 2}

        async def waits(positions: dict[str, int]) -> dict[str, float]:
            return {job: 4.0 * (place - 1) + 1.5 for job, place in positions.items()}

        async def workers() -> bool:
            return True

        places = Places(bus, read, workers, interval_s=0.05, read_waits=waits)
        reader = Reader()
        bus.subscribe("b", reader)
        places.start()
        await asyncio.sleep(0.05)
        await places.stop()
        assert [(e.position, e.wait_s) for e in reader.heard] == [(2, 5.5)]
        assert places.event("a", 1).wait_s == 1.5

    asyncio.run(scenario())
