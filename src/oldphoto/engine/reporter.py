"""One reporter for a whole run: nodes report stages and steps, the reporter turns them into job progress.

Progress is whole percent of the whole job and never decreases. Each node owns a slice of the run's span, in
proportion to its weight; inside a node each stage owns a fixed share of that slice. `eta_s` is the seconds the
run's plan has left (engine/eta.py), not an extrapolation of elapsed time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from oldphoto.engine.cancel import CancelToken
from oldphoto.engine.eta import Countdown, Expected, Plan
from oldphoto.engine.pace import Pace
from oldphoto.protocol import Note, Source, Stage
from oldphoto.protocol.i18n import CATALOG

if TYPE_CHECKING:
    from oldphoto.engine.graph import Workflow

NoteSink = Callable[[Note], None]

STAGE_SHARES: dict[str, tuple[float, float]] = {
    "preprocess": (0.0, 0.05),
    "load_model": (0.05, 0.15),
    "inference": (0.15, 0.92),
    "postprocess": (0.92, 1.0),
}
# A step that does not move the whole percent is still said at most this often, so long tiles keep talking.
MIN_STEP_INTERVAL_S = 0.5


class Reporter:
    """`min_step_gap_s`: a step that comes sooner than this after the last thing said is left out, unless it ends
    its stage. A job records each note it hears (docs/protocol.md), and ten steps a second are more than a bar
    needs: DDColor's 22 blocks pass in 0.65 s on two cores, and they were most of a job's bytes in the log.

    `expected`: the stage durations this deployment learned for the job's model and device (the seed table where it
    learned none); the runner turns them into the run's plan once it knows the workflow and the photo's size."""

    def __init__(
        self,
        sink: NoteSink,
        cancel: CancelToken | None = None,
        span: tuple[int, int] = (1, 99),
        min_step_gap_s: float = 0.0,
        expected: Expected | None = None,
    ) -> None:
        self.sink = sink
        self.cancel = cancel or CancelToken()
        self.span = span
        self.min_step_gap_s = min_step_gap_s
        self.progress = span[0]
        self.last_said = -math.inf
        self.expected = expected or Expected()
        self.countdown = Countdown(Plan())
        self.pace = Pace()  # the nodes' units of work, for whoever watches the run (jobs/meter.py)

    def plan_for(self, workflow: Workflow, pixels: int) -> None:
        """The run's plan: before its first node speaks."""
        self.countdown = Countdown(self.expected.plan(workflow, pixels))

    def for_node(self, node_id: str, source: Source, start: float, end: float) -> NodeReporter:
        """A reporter for a node owning the fraction [start, end] of this run."""
        lo, hi = self.span
        return NodeReporter(self, node_id, source, lo + (hi - lo) * start, lo + (hi - lo) * end)

    def emit(self, note: Note) -> None:
        now = time.monotonic()
        if note.step_progress is not None and note.step_progress < 1.0 and now - self.last_said < self.min_step_gap_s:
            return
        self.last_said = now
        self.progress = max(self.progress, note.progress)
        self.sink(note.model_copy(update={"progress": self.progress}))

    def eta(self, node: str, stage: str, fraction: float) -> float | None:
        return self.countdown.left(node, stage, fraction)


class NodeReporter:
    def __init__(self, run: Reporter, node_id: str, source: Source, lo: float, hi: float) -> None:
        self.run = run
        self.node_id = node_id
        self.source = source
        self.lo = lo
        self.hi = hi
        self.current: Stage = "preprocess"
        self.stage_key = "preprocess"
        self.stage_params: dict[str, Any] = {}
        self.last_emit = 0.0
        self.last_progress = -1

    @property
    def cancel(self) -> CancelToken:
        return self.run.cancel

    def stage(self, stage: Stage, key: str | None = None, *, fields: Mapping[str, Any] | None = None, **params: Any) -> None:
        """Enter a stage; checks for cancellation first. `fields`: protocol fields of this event only (`precision`)."""
        self.cancel.check()
        self.current = stage
        self.stage_key = key or self._default_key(stage)
        self.stage_params = params
        self.run.pace.stage_began(self.node_id)
        self._emit(0.0, self.stage_key, params, step_progress=None, fields=fields)

    def step(self, fraction: float, key: str | None = None, **params: Any) -> None:
        """Progress within the current stage (0..1); checks for cancellation first."""
        self.cancel.check()
        fraction = min(max(fraction, 0.0), 1.0)
        progress = self._job_progress(fraction)
        now = time.monotonic()
        if progress <= self.last_progress and now - self.last_emit < MIN_STEP_INTERVAL_S and fraction < 1.0:
            return
        if key is None:
            key, params = self.stage_key, {**self.stage_params, **params}
        self._emit(fraction, key, params, step_progress=fraction)

    def count(self, done: int, total: int, unit: str, key: str | None = None, /, **params: Any) -> None:
        """`done` of the stage's `total` units of work (blocks, tiles, bands) are done: the step, and the node's speed."""
        self.run.pace.counted(self.node_id, unit, done, total)
        self.step(done / total if total else 1.0, key, **params)

    def _emit(
        self, fraction: float, key: str, params: dict[str, Any], step_progress: float | None, fields: Mapping[str, Any] | None = None
    ) -> None:
        progress = self._job_progress(fraction)
        self.last_emit = time.monotonic()
        self.last_progress = progress
        self.run.emit(
            Note(
                stage=self.current,
                source=self.source,
                node=self.node_id,
                message_key=key,
                message_params=params,
                progress=max(progress, self.run.progress),
                step_progress=None if step_progress is None else round(step_progress, 4),
                eta_s=self.run.eta(self.node_id, self.current, fraction),
                **(fields or {}),
            )
        )

    def _job_progress(self, fraction: float) -> int:
        start, end = STAGE_SHARES[self.current]
        share = start + (end - start) * fraction
        return math.floor(self.lo + (self.hi - self.lo) * share)

    def _default_key(self, stage: Stage) -> str:
        specific = f"{self.source}.{stage}"
        return specific if specific in CATALOG else stage
