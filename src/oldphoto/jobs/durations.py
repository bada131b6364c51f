"""How long each stage takes on this deployment, learned from the jobs that finished, kept in the job store.

Per model, device, size class of the photo, node type and stage (engine/eta.py `size_bucket`), the store keeps the
last `WINDOW` durations seen and their median. Why a windowed median and not a mean (or an exponentially weighted
one): the durations this learns from have rare huge outliers, a cold model load or the first export at an input size
(10-29 s against 0.0 s warm, docs/benchmarks.md section 7), a machine busy for a moment. A median of nine moves not
at all for up to four such values among them, and still follows a real change (other hardware, a model swapped in
place) within five jobs; an EWMA with weight 0.1 would add 1 s to every later estimate for each cold load, and take
twenty jobs to forget it. The state is nine numbers per key.

A job's stage durations are read off its recorded events (`Marks`): a stage lasts from the event that began it to
the one that began the next; the job's last stage lasts until `complete` and is learned as `<stage>+save` (it holds
the result's encode). Only succeeded jobs teach: a cancelled or failed job's last stage ended early.

`Durations` is used by whoever records a job's events (the web process embedded, `oldphoto worker` in scale-out),
on its recording thread, never on an event loop. The same code runs on SQLite and PostgreSQL: several worker nodes
learning the same key at once update its row under the row's lock, one after the other.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from oldphoto.engine import RunOptions, parse_workflow
from oldphoto.engine.eta import SAVE_SUFFIX, Expected, StageKey, size_bucket
from oldphoto.jobs.store import Job, JobStore, StageDurationRow

log = logging.getLogger(__name__)
WINDOW = 9
# Learned values are read again at most this often (other worker nodes learn too); this process's own are at once.
REFRESH_S = 5.0
# A photo whose size was not recorded (admitted before sizes were kept) is taken for one this big.
UNKNOWN_PIXELS = 1_000_000


def updated(recent: list[float], seconds: float) -> list[float]:
    return [*recent, seconds][-WINDOW:]


def robust(recent: Iterable[float]) -> float:
    return float(statistics.median(recent))


@dataclass
class Marks:
    """A running job's stage changes as recorded: (node, stage, recorded at), in order."""

    stages: list[tuple[str, str, float]] = field(default_factory=list)

    def said(self, node: str, stage: str, at: float) -> None:
        if not self.stages or self.stages[-1][:2] != (node, stage):
            self.stages.append((node, stage, at))

    def durations(self, ended: float) -> list[tuple[str, str, float]]:
        """(node, stage, seconds) per stage; the last one's stage named `<stage>+save`."""
        ends = [at for _, _, at in self.stages[1:]] + [ended]
        spans = [(node, stage, max(0.0, end - at)) for (node, stage, at), end in zip(self.stages, ends, strict=True)]
        if spans:
            node, stage, seconds = spans[-1]
            spans[-1] = (node, stage + SAVE_SUFFIX, seconds)
        return spans


class Durations:
    def __init__(self, store: JobStore, options: RunOptions, refresh_s: float = REFRESH_S) -> None:
        self.store = store
        self.options = options
        self.device = options.device
        self.refresh_s = refresh_s
        self._table: dict[tuple[str, int, str, str], float] = {}  # (model, bucket, step, stage) -> seconds
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def model_of(self, job: Job) -> str:
        return job.model or self.options.model

    def expected(self, model: str) -> Expected:
        """What one model's stages take here: handed to the worker with each job of that model."""
        table = self._fresh()
        return Expected({(step, stage, bucket): s for (m, bucket, step, stage), s in table.items() if m == model})

    def job_seconds(self, job: Job) -> float:
        """The whole job's expected seconds (queue waits); its workflow as it was admitted."""
        try:
            workflow = parse_workflow(job.workflow, self.options)
        except Exception:  # admitted, so valid then; a model gone since says nothing of its length
            return 0.0
        return self.expected(self.model_of(job)).total(workflow, job.pixels or UNKNOWN_PIXELS)

    def learn(self, job: Job, marks: Marks, ended: float) -> None:
        """A succeeded job's stage durations into the statistics."""
        types = self.node_types(job)
        bucket = size_bucket(job.pixels or UNKNOWN_PIXELS)
        seen: dict[StageKey, float] = {}
        for node, stage, seconds in marks.durations(ended):
            if node in types:
                key = (types[node], stage, bucket)
                seen[key] = seen.get(key, 0.0) + seconds  # a node type twice in a job: its stages add up per job
        if seen:
            self._record(self.model_of(job), seen)

    def node_types(self, job: Job) -> dict[str, str]:
        try:
            workflow = parse_workflow(job.workflow, self.options)
        except Exception:
            return {}
        return {node: spec.type for node, spec in workflow.nodes.items()}

    def _record(self, model: str, seen: Mapping[StageKey, float]) -> None:
        for attempt in range(2):  # two nodes may insert the same new key at once: the loser updates it instead
            try:
                learned = self._record_once(model, seen)
                break
            except IntegrityError:
                if attempt:
                    raise
        with self._lock:
            self._table.update(learned)

    def _record_once(self, model: str, seen: Mapping[StageKey, float]) -> dict[tuple[str, int, str, str], float]:
        learned = {}
        with Session(self.store.engine) as session, session.begin():
            for (step, stage, bucket), seconds in sorted(seen.items()):  # one order everywhere: no deadlock
                key = {"model": model, "device": self.device, "bucket": bucket, "step": step, "stage": stage}
                row = session.get(StageDurationRow, key, with_for_update=True)
                if row is None:
                    row = StageDurationRow(**key, recent="[]", seconds=seconds, count=0)
                    session.add(row)
                recent = updated(json.loads(row.recent), seconds)
                row.recent, row.seconds, row.count = json.dumps(recent), robust(recent), row.count + 1
                learned[(model, bucket, step, stage)] = row.seconds
        return learned

    def _fresh(self) -> dict[tuple[str, int, str, str], float]:
        now = time.monotonic()
        if now - self._read_at >= self.refresh_s:
            query = select(StageDurationRow).where(StageDurationRow.device == self.device)
            with Session(self.store.reader) as session:
                table = {(r.model, r.bucket, r.step, r.stage): r.seconds for r in session.scalars(query)}
            with self._lock:
                self._table, self._read_at = table, now
        return self._table
