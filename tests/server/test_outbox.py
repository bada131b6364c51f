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
