"""A running job's resources, sampled in its worker process about once a second (docs/protocol.md, "Metrics").

`JobMeter` runs a thread beside the job: each sample (resident memory now and at its peak, PyTorch's CUDA memory where
a CUDA pass ran, the speed of the node counting units now) goes to `send` as a `Measured` message; `stop` ends it and
sends the last one, with the run's speeds, before the job's outcome is said.

The peak resident memory is the kernel's high-water mark (VmHWM), reset when the job begins where Linux allows it
(`/proc/self/clear_refs`), and never below what the samples saw: a job that shares its worker with another that
began later still keeps the peak it saw itself. Elsewhere the samples' maximum is the peak.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from oldphoto.engine.pace import Pace
from oldphoto.jobs.messages import FromWorker, Measured
from oldphoto.protocol.metrics import Usage

log = logging.getLogger(__name__)
# About once a second: a chart that moves, and one small live event per second per job on the wire.
INTERVAL_S = 1.0
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


class JobMeter:
    def __init__(
        self,
        job_id: str,
        pace: Pace,
        send: Callable[[FromWorker], None],
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.pace = pace
        self.send = send
        self.interval_s = interval_s
        self.clock = clock
        self.process = psutil.Process()
        self.began = clock()
        self.peak_rss = 0
        self.peak_cuda: int | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        _reset_high_water_marks()
        self._thread = threading.Thread(target=self._run, name=f"meter-{self.job_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The last sample, with every node's speed; said before the job's outcome."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        self.send(Measured(self.job_id, self.sample(), tuple(self.pace.summary())))

    def sample(self) -> Usage:
        rss = self.process.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss, _high_water_mark())
        cuda = _cuda_memory()
        if cuda is not None:
            self.peak_cuda = max(self.peak_cuda or 0, cuda[1])
        return Usage(
            elapsed_s=round(self.clock() - self.began, 3),
            rss_bytes=rss,
            peak_rss_bytes=self.peak_rss,
            cuda_bytes=None if cuda is None else cuda[0],
            peak_cuda_bytes=self.peak_cuda,
            speed=self.pace.now(),
        )

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                sample = self.sample()
            except Exception:  # a sample missed is no reason to stop sampling, nor to fail the job
                log.exception("job %s: a metrics sample failed", self.job_id, extra={"job_id": self.job_id})
                continue
            self.send(Measured(self.job_id, sample))


def _reset_high_water_marks() -> None:
    with contextlib.suppress(OSError):  # not Linux, or not allowed: the samples' maximum is the peak
        _CLEAR_REFS.write_text("5")
    cuda = _initialised_cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()


def _high_water_mark() -> int:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cuda_memory() -> tuple[int, int] | None:
    """PyTorch's CUDA memory in use and at its peak since the job began; None where no CUDA pass ran."""
    cuda = _initialised_cuda()
    if cuda is None:
        return None
    return int(cuda.memory_allocated()), int(cuda.max_memory_allocated())


def _initialised_cuda() -> Any:
    """`torch.cuda` where a job already brought PyTorch in and started CUDA; never imports anything. The job's own
    thread may be importing torch right now: a module half made is taken for none (asking it for `torch.cuda` would
    wait for that import, or fail)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None and _fully_imported(torch) else None
    try:
        return cuda if cuda is not None and cuda.is_initialized() else None
    except Exception:  # a build without CUDA, or one that cannot say: nothing to measure
        return None


def _fully_imported(module: Any) -> bool:
    spec = getattr(module, "__spec__", None)
    return not getattr(spec, "_initializing", False)
