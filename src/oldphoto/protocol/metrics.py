"""What a running job uses and how fast it goes (docs/protocol.md, "Metrics"): the body of the live `metrics` event,
about once a second, and the summary its final event and `GET /api/jobs/{id}` carry.

Memory is the worker process's: a worker that runs several jobs at once (batching) reports the same process for each.
CUDA memory is PyTorch's allocator on the job's device, absent where no PyTorch CUDA pass ran.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Speed(BaseModel):
    """A node's pace in its own units of work: DDColor's blocks, Real-ESRGAN's tiles, a filter's bands."""

    node: str
    unit: str
    done: int = Field(ge=0)
    total: int = Field(ge=0)
    seconds: float = Field(ge=0.0)  # from the start of the stage it counts in to its latest unit
    per_s: float | None = None  # live: over the last few seconds; in the summary: done / seconds


class StageTime(BaseModel):
    node: str
    stage: str
    seconds: float = Field(ge=0.0)


class Usage(BaseModel):
    """One sample of a running job (the `metrics` event's `metrics`)."""

    elapsed_s: float = Field(ge=0.0)  # since the worker took the job
    rss_bytes: int = Field(ge=0)
    peak_rss_bytes: int = Field(ge=0)  # the process's peak since the job began
    cuda_bytes: int | None = None
    peak_cuda_bytes: int | None = None
    speed: Speed | None = None  # of the node counting units now


class JobMetrics(BaseModel):
    """A job's run, summed up when it ends."""

    elapsed_s: float = Field(ge=0.0)
    peak_rss_bytes: int | None = None
    peak_cuda_bytes: int | None = None
    stages: list[StageTime] = Field(default_factory=list)
    speeds: list[Speed] = Field(default_factory=list)
