"""What a worker process does with one job: decode, run the workflow, save the result. No HTTP, no database."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from oldphoto.engine import CancelToken, Reporter, RunOptions, parse_workflow, run_workflow
from oldphoto.engine.eta import Expected
from oldphoto.engine.previews import Previews
from oldphoto.errors import Cancelled, OldphotoError
from oldphoto.jobs import messages, querymaps
from oldphoto.jobs.messages import Done, Failed, FromWorker, Noted, Previewed
from oldphoto.jobs.meter import JobMeter

if TYPE_CHECKING:
    from oldphoto.imaging.querymaps import QueryMaps

log = logging.getLogger(__name__)
# A job's steps are recorded and sent to every follower: at most about ten a second (stage changes and a stage's last
# step always). See engine/reporter.py.
MIN_STEP_GAP_S = 0.1


@dataclass(frozen=True)
class WorkItem:
    job_id: str
    input_path: str
    result_path: str
    workflow: str
    options: RunOptions
    max_pixels: int
    # What this job's stages take on this deployment (learned, jobs/durations.py): its `eta_s`, without the worker
    # reading the store.
    expected: Expected = field(default_factory=Expected)

    def with_threads(self, threads: int) -> WorkItem:
        """This item with `threads` for its nets, where its options leave that to the worker (None)."""
        if self.options.threads is not None:
            return self
        return replace(self, options=replace(self.options, threads=threads))


def execute(item: WorkItem, cancel: CancelToken, send: Callable[[FromWorker], None]) -> None:
    """Run one job to its end, telling `send` every note, its metrics (jobs/meter.py) and exactly one outcome."""
    reporter = Reporter(
        sink=lambda note: send(Noted(item.job_id, note)), cancel=cancel, min_step_gap_s=MIN_STEP_GAP_S, expected=item.expected
    )
    meter = JobMeter(item.job_id, reporter.pace, send)
    meter.start()
    try:
        outcome = _run(item, cancel, reporter, send)
    finally:
        meter.stop()  # its last sample, before the outcome: the job's summary is complete when it ends
    send(outcome)


def _run(item: WorkItem, cancel: CancelToken, reporter: Reporter, send: Callable[[FromWorker], None]) -> Done | Failed | messages.Cancelled:
    # Here, not at the top: the web process imports this module for WorkItem and must not load numpy and Pillow.
    from oldphoto.imaging import decode_file, save_png

    result = Path(item.result_path)
    maps_path = querymaps.path_for(result)
    # The colorize node's colour-query maps (the last one, if a workflow colorizes twice); only when wanted.
    maps: list[QueryMaps] = []
    try:
        image = decode_file(item.input_path, max_pixels=item.max_pixels)
        workflow = parse_workflow(item.workflow, item.options)
        previews = Previews(lambda note, picture: send(Previewed(item.job_id, note, picture)))
        sink = maps.append if item.options.attention else None
        restored = run_workflow(workflow, image.rgb, options=item.options, reporter=reporter, previews=previews, query_maps=sink)
        cancel.check()
        save_png(result, restored, image.alpha)
        if maps:
            querymaps.save(maps_path, maps[-1])
        return Done(item.job_id)
    except Cancelled:
        _remove(result, maps_path)
        return messages.Cancelled(item.job_id)
    except OldphotoError as exc:
        _remove(result, maps_path)
        return Failed(item.job_id, exc.code, exc.message)
    except MemoryError:
        _remove(result, maps_path)
        return Failed(item.job_id, "out_of_memory", "The machine ran out of memory on this photo.")
    except Exception as exc:  # the job fails, the worker goes on
        log.exception("job %s failed", item.job_id, extra={"job_id": item.job_id})
        _remove(result, maps_path)
        code = "out_of_memory" if type(exc).__name__ == "OutOfMemoryError" else "internal_error"
        return Failed(item.job_id, code, f"{type(exc).__name__}: {exc}")


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
