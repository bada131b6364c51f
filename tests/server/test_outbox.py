from __future__ import annotations

import asyncio

from oldphoto.protocol import JobEvent, LivePlace, OutEvent
from oldphoto.server.outbox import EventTally, Outbox
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


def place(seq: int, job: str, *, live: bool) -> OutEvent:
    """A `queued` event: recorded (its place when it entered the line) or live (a later place, not in the log)."""
    if live:
        return LivePlace(job, position=seq, ts=0.0, seq=seq)
    return event(seq, "queued", job).model_copy(update={"position": seq})


def test_a_final_event_is_kept_when_the_full_box_holds_only_essential_events() -> None:
    box = Outbox(capacity=2)
    box.deliver(event(1, "queued", job="j1"))
    box.deliver(event(1, "queued", job="j2"))
    box.deliver(event(9, "complete", job="j3"))
    assert [(e.job_id, e.type) for e in box.items] == [("j1", "queued"), ("j2", "queued"), ("j3", "complete")]


def test_a_final_event_already_queued_never_gives_way_to_later_progress() -> None:
    box = Outbox(capacity=2)
    box.deliver(event(9, "complete", job="a"))
    box.deliver(event(3, job="b"))
    box.deliver(event(4, job="c"))
    kept = [(e.job_id, e.type) for e in box.items]
    assert ("a", "complete") in kept and len(kept) == 2 and box.coalesced == 1


def test_each_final_type_survives_a_full_box() -> None:
    for final in ("complete", "error", "cancelled"):
        box = Outbox(capacity=2)
        box.deliver(event(9, final, job="a"))
        for seq in range(3, 10):
            box.deliver(event(seq, job="b"))
        box.deliver(event(1, "queued", job="c"))
        box.deliver(event(2, "queued", job="d"))
        box.deliver(event(10, final, job="e"))
        kept = [(e.job_id, e.type) for e in box.items]
        assert kept[0] == ("a", final) and kept[-1] == ("e", final) and ("c", "queued") in kept and ("d", "queued") in kept, (final, kept)


def test_a_live_place_gives_way_in_a_full_box_and_a_recorded_one_does_not() -> None:
    box = Outbox(capacity=2)
    box.deliver(place(1, "j1", live=False))
    box.deliver(place(2, "j2", live=True))
    box.deliver(event(9, "complete", job="j3"))  # the live place makes room; the recorded one stays
    assert [(e.job_id, e.type, e.live) for e in box.items] == [("j1", "queued", False), ("j3", "complete", False)]
    box.deliver(place(3, "j4", live=True))  # full of essential events: a live place is dropped, never let over the bound
    assert [e.job_id for e in box.items] == ["j1", "j3"]
    box.deliver(place(4, "j5", live=False))  # a recorded place is essential: it may exceed the bound
    assert [e.job_id for e in box.items] == ["j1", "j3", "j5"]


def test_a_waiting_live_place_is_replaced_by_the_jobs_next_one_in_place() -> None:
    box = Outbox(capacity=8)
    box.deliver(place(5, "j", live=False))
    box.deliver(place(4, "j", live=True))
    box.deliver(event(1, job="k"))
    box.deliver(place(3, "j", live=True))
    assert [(e.job_id, e.position, e.live) for e in box.items] == [("j", 5, False), ("j", 3, True), ("k", None, False)]
    assert box.coalesced == 1


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


def test_a_full_box_drops_the_incoming_jobs_own_progress_first_and_counts_each_drop() -> None:
    box = Outbox(capacity=3)
    box.deliver(event(1, job="a"))
    box.deliver(event(1, job="b"))
    box.deliver(event(2, job="a"))
    box.deliver(event(2, job="b"))  # full: b's own older progress goes, not a's older one
    assert [(e.job_id, e.seq) for e in box.items] == [("a", 1), ("a", 2), ("b", 2)]
    box.deliver(event(3, job="c"))  # nothing of c's: the oldest droppable goes
    assert [(e.job_id, e.seq) for e in box.items] == [("a", 2), ("b", 2), ("c", 3)] and box.coalesced == 2
    for seq in (1, 2, 3):
        box.deliver(place(seq, "q", live=True))  # a live place that finds no room is dropped, and counted
    assert box.coalesced == 5
    box.deliver(event(9, "complete", job="a"))
    assert box.coalesced == 6 and [e.type for e in box.items][-1] == "complete"


def test_a_waiting_live_place_replaced_counts_as_coalesced() -> None:
    box = Outbox(capacity=8)
    for seq in (1, 2, 3):
        box.deliver(place(seq, "a", live=True))
    assert [e.position for e in box.items] == [3] and box.coalesced == 2


def test_events_bypass_an_idle_box_only_once_the_reader_is_done_with_the_last() -> None:
    bypassed: list[OutEvent] = []

    def bypass(e: OutEvent) -> bool:
        bypassed.append(e)
        return True

    async def scenario() -> None:
        box = Outbox(capacity=4, bypass=bypass)
        box.deliver(event(1))  # idle: bypassed
        assert len(box) == 0 and box.bypassed == 1
        box.items.append(event(2))
        assert (await box.get()).seq == 2
        box.deliver(event(3))  # the reader is still on 2: 3 must wait behind it
        assert [e.seq for e in box.items] == [3]
        assert (await box.get()).seq == 3
        box.done()
        box.deliver(event(4))  # done and empty: bypassed again
        assert len(box) == 0 and box.bypassed == 2 and [e.seq for e in bypassed] == [1, 4]

    run_async(scenario())


def test_progress_that_finds_a_box_full_of_essentials_is_dropped_and_counted() -> None:
    box = Outbox(capacity=2)
    box.deliver(event(1, "queued", job="j1"))
    box.deliver(event(1, "queued", job="j2"))
    for seq in (2, 3, 4):
        box.deliver(event(seq, job="j1"))
    assert [e.type for e in box.items] == ["queued", "queued"] and box.coalesced == 3


def test_the_shared_tally_adds_up_every_outbox_s_sent_and_coalesced_events() -> None:
    """The process-wide counters behind /metrics' oldphoto_events_sent_total and oldphoto_events_coalesced_total."""
    tally = EventTally()
    slow, quick = Outbox(capacity=2, tally=tally), Outbox(capacity=2, tally=tally, bypass=lambda _: True)
    for seq in range(1, 6):
        slow.deliver(event(seq))  # two kept, three coalesced away
        quick.deliver(event(seq))  # all five written at once by the bypass
    taken = run_async(slow.get())
    assert taken.seq == 4
    assert tally.coalesced == slow.coalesced == 3
    assert tally.sent == 5 + 1
