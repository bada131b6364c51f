"""What is left of a run, in seconds, from what each stage is expected to take: not from elapsed time.

The first ETA of a job used to extrapolate elapsed time in a straight line: 19.3 s for a job that took 4 s, because
a cold model load counted as work done. Here a run is a `Plan`: its nodes' stages in the order they say them, each
with its expected seconds, and the seconds left are those of the stages not begun plus the part of the current one
not done. Expected seconds come from `Expected` (what this deployment learned, jobs/durations.py, handed in with
the job) or, for a stage never seen on this deployment, from the built-in `SEED` table. The engine reads no
settings and no database for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oldphoto.engine.graph import Workflow

MP = 1_000_000
# Statistics are kept per size class of the photo: powers of two of pixels, the first up to 2^16 (256x256).
BUCKET_BASE_PIXELS = 1 << 16
# The final stage of a job is learned apart (`<stage>+save`): it ends when the result PNG is written, not when the
# next node begins, so it carries the encode.
SAVE_SUFFIX = "+save"

# Seconds per stage for a first run: fixed + per megapixel of the photo, in the order each node says its stages.
# Measured on this project's machine (2-core AMD EPYC, torch 2.x, CPU): DDColor tiny at input 512 from
# benchmarks/stage_times.py (docs/benchmarks.md section 7: warm preprocess 0.007 s, inference 1.15 s on a 0.55 MP
# photo; the cold load of 10 s is once per worker, so a warm 0.3 s is seeded), Denoise, Sharpen and Upscale at their
# defaults from benchmarks/cost_calibration.py (docs/jobs.md: Denoise t7 s21 4.3 s/MP, Sharpen 0.24 s/MP,
# animevideov3-x2 tile 256 about 30 s/MP), encode 0.12-0.23 s/MP. Learned values replace them after one job.
SEED: dict[str, tuple[tuple[str, float, float], ...]] = {
    "DDColor": (("preprocess", 0.01, 0.02), ("load_model", 0.3, 0.0), ("inference", 1.1, 0.1), ("postprocess", 0.005, 0.02)),
    "Denoise": (("preprocess", 0.0, 0.0), ("inference", 0.05, 4.3), ("postprocess", 0.0, 0.0)),
    "Sharpen": (("preprocess", 0.0, 0.0), ("inference", 0.02, 0.24), ("postprocess", 0.0, 0.0)),
    "Upscale": (("preprocess", 0.0, 0.0), ("load_model", 0.3, 0.0), ("inference", 1.5, 30.0), ("postprocess", 0.0, 0.05)),
    "Pause": (("inference", 1.0, 0.0),),  # the test node: its seconds are its own (widget), learned
}
SAVE_SEED_S_PER_MP = 0.2


def size_bucket(pixels: int) -> int:
    """0 up to 256x256, then one more per doubling of the pixels: 4 is up to 1 MP, 5 up to 2 MP."""
    return max(0, math.ceil(math.log2(max(pixels, 1) / BUCKET_BASE_PIXELS)))


StageKey = tuple[str, str, int]  # (node type, stage, size bucket)


@dataclass(frozen=True)
class Expected:
    """Learned seconds per (node type, stage, size bucket) for one model and device; empty: the seed table only."""

    seconds: Mapping[StageKey, float] = field(default_factory=dict)

    def of(self, node_type: str, stage: str, pixels: int, *, last: bool = False) -> float:
        return self.entry("", node_type, stage, pixels, last=last).seconds

    def entry(self, node: str, node_type: str, stage: str, pixels: int, *, last: bool = False) -> PlanEntry:
        learned = self.seconds.get((node_type, stage + SAVE_SUFFIX if last else stage, size_bucket(pixels)))
        if learned is not None:
            return PlanEntry(node, stage, learned)
        return PlanEntry(node, stage, seed_seconds(node_type, stage, pixels, last=last), seeded=True)

    def plan(self, workflow: Workflow, pixels: int) -> Plan:
        stages = [(node, workflow.nodes[node].type, stage) for node in workflow.order for stage in node_stages(workflow.nodes[node].type)]
        last = len(stages) - 1
        return Plan(tuple(self.entry(node, kind, stage, pixels, last=i == last) for i, (node, kind, stage) in enumerate(stages)))

    def total(self, workflow: Workflow, pixels: int) -> float:
        return sum(entry.seconds for entry in self.plan(workflow, pixels).entries)


def node_stages(node_type: str) -> tuple[str, ...]:
    return tuple(stage for stage, _, _ in SEED.get(node_type, ()))


def seed_seconds(node_type: str, stage: str, pixels: int, *, last: bool = False) -> float:
    fixed, per_mp = next(((f, p) for s, f, p in SEED.get(node_type, ()) if s == stage), (0.0, 0.0))
    return fixed + per_mp * pixels / MP + (SAVE_SEED_S_PER_MP * pixels / MP if last else 0.0)


@dataclass(frozen=True)
class PlanEntry:
    node: str
    stage: str
    seconds: float
    seeded: bool = False  # from the seed table: never timed on this deployment


@dataclass(frozen=True)
class Plan:
    entries: tuple[PlanEntry, ...] = ()


class Countdown:
    """Where a run is in its plan, and the seconds left from there.

    Within a stage this deployment never timed (its seconds from the seed table), what is left of it is the expected
    rest moved toward the stage's own pace as more of it is done: at fraction f of a stage begun t seconds ago,
    (1 - f) x expected rest + f x t (1 - f) / f. A stage's units of work (blocks, tiles, bands) are alike, so its own
    pace soon says more than a table that never saw this photo, this machine or this model. A learned stage keeps its
    learned seconds: measured over 30 mixed jobs (docs/benchmarks.md, section 14), moving those toward the pace too
    doubled the median error of the jobs seen before. Elapsed time plays no part across stages, where a cold model
    load would say nothing of the work after it.

    Words the plan cannot place (a stage the table never heard of, or late words from a stage already left) keep the
    place and repeat the last estimate. A node that skips a stage it usually has is fine: the next one it says moves
    the place past it."""

    def __init__(self, plan: Plan, clock: Callable[[], float] = time.monotonic) -> None:
        self.plan = plan
        self.clock = clock
        self.began = 0.0  # when the current stage began
        self.index = {(e.node, e.stage): i for i, e in enumerate(plan.entries)}
        # Seconds of the entries after each one: the work not begun.
        after, self.after = 0.0, [0.0] * len(plan.entries)
        for i in range(len(plan.entries) - 1, -1, -1):
            self.after[i] = after
            after += plan.entries[i].seconds
        self.total = after
        self.at = -1
        self.last = round(after, 1)

    def left(self, node: str, stage: str, fraction: float) -> float | None:
        """Seconds left with `node` at `fraction` (0..1) of `stage`; None without a plan."""
        if not self.plan.entries:
            return None
        i = self.index.get((node, stage))
        now = self.clock()
        if i is not None and i > self.at:
            self.at, self.began = i, now
        if i is None or i < self.at:
            return self.last
        entry = self.plan.entries[i]
        rest = entry.seconds * (1.0 - fraction)
        if entry.seeded and fraction > 0.0:
            by_pace = (now - self.began) * (1.0 - fraction) / fraction
            rest = (1.0 - fraction) * rest + fraction * by_pace
        self.last = round(rest + self.after[i], 1)
        return self.last
