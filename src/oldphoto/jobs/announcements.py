"""The events the job system itself records (the engine's notes are the others): queue places and outcomes."""

from __future__ import annotations

from typing import Any


def result_url(job_id: str) -> str:
    return f"/results/{job_id}.png"


def queued(position: int, progress: int) -> dict[str, Any]:
    return {
        "type": "queued",
        "stage": "queued",
        "message_key": "queued",
        "message_params": {"position": position},
        "progress": progress,
        "position": position,
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
