"""The model benchmarks (colorize speed, batching, stage times, ab upsampling) run end to end at a tiny size, as
commands, so none can rot. Not timed: only that each still runs and prints what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_colorize_speed_compares_the_project_with_the_reference(tmp_path: Path) -> None:
    out = run("colorize_speed.py", "--models", "tiny", "--runtimes", "torch", "--input-size", "64", "--rounds", "1", "--photos", "1",
              "--work", str(tmp_path), "--out", str(tmp_path / "result.json"))
    assert "x the reference (ratio of medians)" in out and (tmp_path / "result.json").is_file()


def test_batching_compares_batched_with_one_at_a_time(tmp_path: Path) -> None:
    out = run("batching.py", "--jobs", "1", "2", "--runtimes", "torch", "--input-size", "64", "--repeats", "1",
              "--work", str(tmp_path), "--out", str(tmp_path / "result.json"))
    assert "throughput x" in out and "2 jobs" in out


def test_stage_times_prints_its_table() -> None:
    out = run("stage_times.py", "--quick")
    assert "| model | run | preprocess | load_model | inference | postprocess | total |" in out


def test_ab_upsample_compares_nearest_with_bilinear() -> None:
    out = run("ab_upsample.py", "--input-size", "64", "--enlarge", "1")
    assert "| photo | size | nearest" in out and "bilinear has the lower mean" in out


def test_worker_memory_prints_rss_before_peak_and_after_each_job(tmp_path: Path) -> None:
    out = run("worker_memory.py", "--quick", "--out", str(tmp_path / "result.json"))
    assert "| job | round | RSS before MB | peak MB | after MB |" in out and "| upscale " in out and "| colorize " in out
    assert (tmp_path / "result.json").is_file()


def test_precision_compares_fast_with_faithful_on_a_photo(tmp_path: Path, photos: list[Path]) -> None:
    """One photo shrunk to 256 px, tiny, input 128 (skipped without ../shared/photos, as the benchmark itself stops)."""
    out = run("precision.py", "--quick", "--out", str(tmp_path / "result.json"))
    if "skipped: this CPU has no native bfloat16" in out:
        return
    assert "| model | photo | size | ΔE00 mean | ΔE00 p99 | ΔE00 max |" in out and "| tiny | " in out
    assert "recommendation for tiny (convnext-t)" in out and (tmp_path / "result.json").is_file()


def test_gpu_check_runs_on_the_cpu(tmp_path: Path) -> None:
    """The GPU script's every step at a tiny size on the CPU, so it cannot rot before a GPU runs it."""
    out = run("gpu_check.py", "--device", "cpu", "--quick", "--out", str(tmp_path / "result.json"))
    assert "| model | dtype | input | float16 probe | ΔE00 mean |" in out
    for dtype in ("float32", "float16", "bfloat16"):
        assert f"| tiny | {dtype} | 64 |" in out
    assert "| tiny | float32 | 2 |" in out and "| model | dtype | cancels | p50 ms |" in out
    assert "OLDPHOTO_PRECISION=" in out and "OLDPHOTO_BATCH_MAX=" in out and (tmp_path / "result.json").is_file()
