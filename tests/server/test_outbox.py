from __future__ import annotations

import asyncio

from oldphoto.protocol import JobEvent
from oldphoto.server.outbox import Outbox
from tests.helpers.server import run_async


def event(seq: int, kind: str = "progress", job: str = "a") -> JobEvent:
    return JobEvent(job_id=job, seq=seq, type=kind, stage="queued" if kind == "queued" else "inference", message_key="inference", progress=min(seq, 100))


def test_a_full_outbox_drops_old_progress_but_never_essential_events() -> None:
    box = Outbox(capacity=4)
    box.deliver(event(1, "queued"))
    for seq in range(2, 50):
        box.deliver(event(seq))
    box.deliver(event(50, "complete"))
    kinds = [e.type for e in box.items]
    assert kinds[0] == "queued" and kinds[-1] == "complete"
    seqs = [e.seq for e in box.items]
    assert seqs == sorted(seqs) and 49 in seqs
    assert len(box.items) <= 5 and box.coalesced > 0


def test_essential_events_may_exceed_the_bound() -> None:
    box = Outbox(capacity=2)
    for seq in range(1, 6):
        box.deliver(event(seq, "queued", job=f"j{seq}"))
    assert len(box) == 5


def test_get_waits_for_the_next_event() -> None:
    async def scenario() -> list[int]:
        box = Outbox()
        waiter = asyncio.create_task(box.get())
        await asyncio.sleep(0.01)
        box.deliver(event(7))
        return [(await waiter).seq]

    assert run_async(scenario()) == [7]


class Writer:
    """A prepared-frame writer that takes events until told to hold back, as a transport that filled up."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.accepting = True

    def __call__(self, event: JobEvent) -> bool:
        if self.accepting:
            self.written.append(event.seq)
        return self.accepting


def test_with_a_bypass_events_skip_the_queue_while_it_is_empty() -> None:
    writer = Writer()
    box = Outbox(bypass=writer)
    for seq in (1, 2, 3):
        box.deliver(event(seq))
    assert writer.written == [1, 2, 3] and len(box) == 0 and box.bypassed == 3


def test_once_the_bypass_declines_events_queue_behind_it_in_order() -> None:
    writer = Writer()
    box = Outbox(bypass=writer)
    box.deliver(event(1))
    writer.accepting = False
    box.deliver(event(2))
    writer.accepting = True  # the transport drained, but event 2 is still queued: 3 must not overtake it
    box.deliver(event(3))
    assert writer.written == [1] and [e.seq for e in box.items] == [2, 3]


def test_nothing_bypasses_an_event_the_reader_is_still_sending() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        writer = Writer()
        writer.accepting = False
        box = Outbox(bypass=writer)
        box.deliver(event(1))
        writer.accepting = True
        taken = await box.get()  # the send loop holds event 1 now
        box.deliver(event(2))
        queued = [e.seq for e in box.items]
        box.done()
        box.deliver(event(3))  # still behind 2, which is queued
        return [taken.seq, *queued], writer.written

    order, written = run_async(scenario())
    assert order == [1, 2] and written == []
