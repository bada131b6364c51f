"""What worker processes, the pool and a worker node's threads tell the process that records jobs.

Every message is a frozen dataclass; receivers `match` them and end in `assert_never`, so a message nobody
handles is a type error, not a silently ignored tuple. All of them cross the spawn boundary by pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from oldphoto.protocol import Note
from oldphoto.protocol.metrics import Speed, Usage


@dataclass(frozen=True, slots=True)
class Ready:
    """A worker process has started and takes jobs."""


@dataclass(frozen=True, slots=True)
class Noted:
    job_id: str
    note: Note


@dataclass(frozen=True, slots=True)
class Previewed:
    """A running job's latest picture: the `preview` note to record, and the picture's JPEG bytes, which are kept
    apart from the log (docs/protocol.md, "Previews")."""

    job_id: str
    note: Note
    image: bytes


@dataclass(frozen=True, slots=True)
class Measured:
    """A running job's resources and pace (jobs/meter.py): about once a second, and once more before its outcome
    with every node's speed (`speeds`; empty in the samples before)."""

    job_id: str
    usage: Usage
    speeds: tuple[Speed, ...] = ()


@dataclass(frozen=True, slots=True)
class Done:
    """The result is saved at the job's result path."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Failed:
    job_id: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    job_id: str


@dataclass(frozen=True, slots=True)
class Released:
    """After a job's outcome: the worker gave back what memory it could and still holds `rss_bytes` (resident).

    The pool's own business (it replaces a worker that stays above its ceiling); not handed on to its owner.
    """

    rss_bytes: int


@dataclass(frozen=True, slots=True)
class Crashed:
    """The job's worker process ended under it; the pool says so (a worker cannot)."""

    job_id: str
    reason: str  # a sentence for the job's owner
    code: Literal["worker_crashed", "worker_restarted"] = "worker_crashed"


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The job ran past its time limit and its worker was killed; the pool says so."""

    job_id: str


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """A cancel heard by a worker node's listener thread, handed to its recording loop."""

    job_id: str


# What a worker process sends over its pipe.
FromWorker = Ready | Noted | Previewed | Measured | Done | Failed | Cancelled | Released
# How a job in a worker ends: exactly one of these per job handed to a worker.
Outcome = Done | Failed | Cancelled | Crashed | TimedOut
# What is said about one job: recorded by the Recorder.
JobMessage = Noted | Previewed | Measured | Outcome
# What a WorkerPool hands its owner.
WorkerMessage = Ready | JobMessage
# What a worker node's recording loop receives: the pool's messages and its listener's.
NodeMessage = WorkerMessage | CancelRequest


def exited(job_id: str, exitcode: int | None) -> Crashed:
    return Crashed(job_id, f"The worker running this job stopped unexpectedly (exit code {exitcode}).")


def restarted_beside(job_id: str) -> Crashed:
    """For a job that shared its worker with one that ran out of time: the worker was killed for the other's sake."""
    return Crashed(
        job_id,
        "Another job in the same worker ran out of time and the worker was restarted; please try again.",
        code="worker_restarted",
    )
