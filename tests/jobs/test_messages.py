"""The typed messages between the recording process and its worker processes: they cross the spawn boundary
intact, and a real WorkerPool says each of them when its workers do what the message names."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from oldphoto.jobs.messages import (
    Cancelled,
    CancelRequest,
    Crashed,
    Done,
    Failed,
    FromWorker,
    Measured,
    NodeMessage,
    Noted,
    Previewed,
    Ready,
    Released,
    TimedOut,
    exited,
    restarted_beside,
)
from oldphoto.jobs.workers import CONTEXT
from oldphoto.protocol import Note, PreviewImage, Speed, Usage
from tests.helpers.pools import Pool, start
from tests.jobs.conftest import crash_workflow, pause_workflow

EACH_KIND: list[NodeMessage | FromWorker] = [
    Ready(),
    Noted("j1", Note(stage="inference", message_key="inference.block", message_params={"index": 1}, progress=40)),
    Previewed(
        "j1",
        Note(type="preview", stage="inference", message_key="inference", progress=41, preview=PreviewImage(width=3, height=2, frame=1)),
        b"\xff\xd8\xff picture",
    ),
    Measured(
        "j1",
        Usage(elapsed_s=1.5, rss_bytes=2**28, peak_rss_bytes=2**29, speed=Speed(node="1", unit="block", done=3, total=22, seconds=0.4, per_s=7.5)),
        (Speed(node="1", unit="block", done=22, total=22, seconds=2.0, per_s=11.0),),
    ),
    Done("j1"),
    Failed("j2", "invalid_image", "The file is not an image."),
    Cancelled("j3"),
    exited("j4", -9),
    restarted_beside("j5"),
    TimedOut("j6"),
    CancelRequest("j7"),
    Released(3 * 2**30),
]


def _send_each(conn: Connection) -> None:
    for message in EACH_KIND:
        conn.send(message)
    conn.close()


def test_every_kind_crosses_the_spawn_boundary_intact() -> None:
    parent, child = CONTEXT.Pipe(duplex=False)
    process = CONTEXT.Process(target=_send_each, args=(child,))
    process.start()
    child.close()
    received = [parent.recv() for _ in EACH_KIND]
    process.join(30)
    assert received == EACH_KIND
    assert [type(m) for m in received] == [type(m) for m in EACH_KIND]


def test_messages_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Done("j1").job_id = "j2"  # type: ignore[misc]


@pytest.mark.slow
def test_a_real_worker_says_ready_notes_and_each_outcome(pools: list[Pool], tmp_path: Path) -> None:
    pool = start(pools, tmp_path)
    assert pool.next() == Ready()

    pool.submit("ok", pause_workflow(0.1))
    notes, done = pool.until(Done)
    assert done == Done("ok") and (tmp_path / "ok.png").is_file()
    assert notes and all(isinstance(n, Noted | Measured) and n.job_id == "ok" for n in notes)
    # Its metrics: the last one, before its outcome, with the speeds of the run.
    assert isinstance(notes[-1], Measured) and notes[-1].usage.peak_rss_bytes >= notes[-1].usage.rss_bytes > 0
    notes = [n for n in notes if isinstance(n, Noted)]
    assert notes[-1].note.progress >= notes[0].note.progress

    pool.submit("bad", '{"steps": "no-such-step"}')
    _, failed = pool.until(Failed)
    assert failed.job_id == "bad" and failed.code == "invalid_workflow"  # type: ignore[union-attr]

    pool.submit("stopped", pause_workflow(20))
    pool.until(Noted)
    assert pool.pool.cancel("stopped")
    _, cancelled = pool.until(Cancelled, timeout=5)
    assert cancelled == Cancelled("stopped")

    pool.submit("crash", crash_workflow())
    _, crashed = pool.until(Crashed)
    assert crashed == exited("crash", 70) and crashed.code == "worker_crashed"  # type: ignore[union-attr]
    assert pool.until(Ready)[1] == Ready()  # its replacement


@pytest.mark.slow
def test_a_timeout_fails_the_late_job_and_tells_the_one_beside_it_the_worker_restarted(pools: list[Pool], tmp_path: Path) -> None:
    pool = start(pools, tmp_path, slots=2, job_timeout_s=3)
    assert pool.next() == Ready()
    pool.submit("stuck", pause_workflow(30))
    time.sleep(1.5)  # the second job's own limit is still 1.5 s away when the first one's runs out
    pool.submit("beside", pause_workflow(30))
    outcomes = [m for m in pool.until(Ready, timeout=30)[0] if not isinstance(m, Noted | Measured)]
    assert outcomes == [TimedOut("stuck"), restarted_beside("beside")]
    assert outcomes[1].code == "worker_restarted"  # type: ignore[union-attr]
    assert "ran out of time" in outcomes[1].reason and "exit code" not in outcomes[1].reason  # type: ignore[union-attr]
