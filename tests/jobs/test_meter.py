"""A running job's metrics, sampled in its worker process: memory now and at its peak, and its pace."""

from __future__ import annotations

import mmap
import sys
import time
from pathlib import Path

import pytest

from oldphoto.engine.pace import Pace
from oldphoto.jobs.messages import FromWorker, Measured
from oldphoto.jobs.meter import JobMeter

MB = 2**20


def test_samples_come_about_every_interval_and_the_last_one_carries_the_speeds() -> None:
    sent: list[FromWorker] = []
    pace = Pace()
    meter = JobMeter("j", pace, sent.append, interval_s=0.05)
    meter.start()
    pace.stage_began("1")
    for done in range(1, 6):
        time.sleep(0.03)
        pace.counted("1", "block", done, 5)
    time.sleep(0.1)
    meter.stop()
    samples = [m for m in sent if isinstance(m, Measured)]
    assert len(samples) == len(sent) >= 3
    assert all(m.job_id == "j" and m.speeds == () for m in samples[:-1])
    last = samples[-1]
    assert [(s.node, s.unit, s.done) for s in last.speeds] == [("1", "block", 5)]
    assert last.usage.speed is not None and last.usage.speed.done == 5
    elapsed = [m.usage.elapsed_s for m in samples]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 0.25
    assert all(m.usage.peak_rss_bytes >= m.usage.rss_bytes > 10 * MB for m in samples)
    assert last.usage.cuda_bytes is None  # no CUDA pass ran here


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the kernel's high-water mark is Linux's")
def test_the_peak_counts_memory_held_between_samples_and_starts_again_with_each_job() -> None:
    sent: list[FromWorker] = []
    before = JobMeter("earlier", Pace(), sent.append, interval_s=60)
    before.start()
    resident(300 * MB).close()
    before.stop()
    meter = JobMeter("j", Pace(), sent.append, interval_s=60)  # no sample of its own until it stops
    meter.start()
    baseline = meter.sample().rss_bytes
    resident(200 * MB).close()  # a burst between samples
    meter.stop()
    last = sent[-1]
    assert isinstance(last, Measured) and last.job_id == "j"
    print(f"\nbaseline {baseline / MB:.0f} MB, peak {last.usage.peak_rss_bytes / MB:.0f} MB, now {last.usage.rss_bytes / MB:.0f} MB")
    assert last.usage.peak_rss_bytes >= baseline + 190 * MB, "the burst between samples was missed"
    assert last.usage.peak_rss_bytes < baseline + 290 * MB, "the earlier job's 300 MB counted in this one's peak"
    assert last.usage.rss_bytes < baseline + 100 * MB


def resident(size: int) -> mmap.mmap:
    """`size` bytes made resident in fresh pages of their own: not from the allocator, which in a test process that
    has run others may hand out memory that is resident already (the whole suite: 5.6 GB, no growth seen)."""
    pages = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        pages[offset] = 1
    return pages


def test_a_torch_half_imported_by_the_jobs_thread_is_left_alone_and_a_failed_sample_stops_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's thread may be importing torch when a sample comes: asking the half-made module for `torch.cuda` would
    fail (or wait for the import), and a sampler thread that died there sent nothing more for the whole job."""
    import importlib.machinery
    import types

    half = types.ModuleType("torch")
    half.__spec__ = importlib.machinery.ModuleSpec("torch", None)
    half.__spec__._initializing = True  # type: ignore[attr-defined]  # what importlib sets while the module runs
    monkeypatch.setitem(sys.modules, "torch", half)
    sent: list[FromWorker] = []
    meter = JobMeter("j", Pace(), sent.append, interval_s=0.02)
    failures = iter([RuntimeError("once")])
    real_sample = meter.sample

    def sample() -> object:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_sample()

    monkeypatch.setattr(meter, "sample", sample)
    meter.start()
    time.sleep(0.2)
    monkeypatch.setattr(meter, "sample", real_sample)
    meter.stop()
    assert len(sent) >= 3 and all(isinstance(m, Measured) and m.usage.cuda_bytes is None for m in sent)
