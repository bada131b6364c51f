"""The events the job system itself records (the engine's notes are the others): queue places and outcomes."""

from __future__ import annotations

from typing import Any

from oldphoto.protocol import JobEvent


def result_url(job_id: str) -> str:
    return f"/results/{job_id}.png"


# The stages of a job that has not started: its reader may still hear a new place.
WAITING_STAGES = frozenset({"upload", "queued"})


def uploaded(job_id: str) -> JobEvent:
    """A job's first event (seq 1), recorded with the job in the admitting transaction."""
    return JobEvent(job_id=job_id, seq=1, stage="upload", message_key="upload", progress=0)


def queued(position: int, progress: int, wait_s: float | None = None) -> dict[str, Any]:
    return {
        "type": "queued",
        "stage": "queued",
        "message_key": "queued",
        "message_params": {"position": position},
        "progress": progress,
        "position": position,
        "wait_s": wait_s,
    }


def complete(job_id: str) -> dict[str, Any]:
    return {"type": "complete", "stage": "complete", "message_key": "complete", "progress": 100, "result_url": result_url(job_id)}


def ended(kind: str, stage: str, progress: int) -> dict[str, Any]:
    """`cancelled` (or another final type that says nothing more) at the stage and progress the job had reached."""
    return {"type": kind, "stage": stage, "message_key": kind, "progress": progress}


def failed(stage: str, code: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "stage": stage,
        "message_key": "error",
        "message_params": {"error": message},
        "progress": 0,
        "error": message,
        "code": code,
    }
