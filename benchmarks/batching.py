"""Do concurrent colorize jobs go faster through one batched forward pass than one after another?

N jobs (threads, each: the authors' preprocessing of a photo, the network, the postprocessing) go through
`Batcher(colorizer, max_batch=N, max_wait_s=0.02)` at once; the same N jobs also run one at a time on the same
colorizer. Throughput ratio = time one at a time / time batched (above 1: batching is faster). Repetitions
alternate the two ways, and the load average is recorded with each.

Run: .venv/bin/python benchmarks/batching.py [--jobs 1 4 8] [--runtimes onnx torch] [--model tiny] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.colorize_speed import machine, make_weights, photos  # noqa: E402
from oldphoto.models.cache import MODEL_CACHE  # noqa: E402
from oldphoto.models.ddcolor import load_colorizer, postprocess, preprocess  # noqa: E402
from oldphoto.models.ddcolor.batching import Batcher  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "batching.json"


def one_job(rgb: np.ndarray, infer: Any, size: int) -> np.ndarray:
    prepared = preprocess(rgb, size)
    return postprocess(prepared, infer(prepared.batch()), "nearest")


def sequential(colorizer: Any, jobs: list[np.ndarray], size: int) -> float:
    started = time.perf_counter()
    for rgb in jobs:
        one_job(rgb, colorizer.infer, size)
    return time.perf_counter() - started


def batched(colorizer: Any, jobs: list[np.ndarray], size: int, wait_s: float) -> tuple[float, int]:
    batcher = Batcher(colorizer, max_batch=len(jobs), max_wait_s=wait_s)
    barrier = threading.Barrier(len(jobs) + 1)
    errors: list[BaseException] = []

    def worker(rgb: np.ndarray) -> None:
        barrier.wait()
        try:
            one_job(rgb, batcher.infer, size)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(rgb,)) for rgb in jobs]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    batcher.close()
    if errors:
        raise errors[0]
    return seconds, batcher.batches_run


def forward_only(colorizer: Any, count: int, size: int, repeats: int) -> dict[str, Any]:
    """The network alone: one pass over a batch of `count` against `count` passes over one image, alternated."""
    x = torch.rand(count, 1, size, size).expand(count, 3, size, size).contiguous()
    singles, together, loads = [], [], []
    for repeat in range(repeats):
        for way in (("one", "batch") if repeat % 2 == 0 else ("batch", "one")):
            started = time.perf_counter()
            if way == "one":
                for i in range(count):
                    colorizer.infer(x[i : i + 1])
                singles.append(time.perf_counter() - started)
            else:
                colorizer.infer(x)
                together.append(time.perf_counter() - started)
        loads.append(round(os.getloadavg()[0], 2))
    return {
        "passes_of_one_s": round(statistics.median(singles), 2),
        "one_batched_pass_s": round(statistics.median(together), 2),
        "throughput_ratio": round(statistics.median(singles) / statistics.median(together), 2),
        "load_avg": loads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--runtimes", nargs="+", default=["onnx", "torch"], choices=["exact", "torch", "onnx"])
    parser.add_argument("--model", default="tiny", choices=["tiny", "large"])
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wait-ms", type=float, default=20.0)
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "oldphoto" / "bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    header = machine()
    print("machine:", json.dumps(header))
    images = list(photos(None).values())
    args.work.mkdir(parents=True, exist_ok=True)
    weights = make_weights(args.model, args.work)
    results = []
    for runtime in args.runtimes:
        MODEL_CACHE.clear()
        colorizer, _ = load_colorizer(weights, torch.device("cpu"), runtime)
        print(f"\n== {args.model}, runtime {colorizer.prepare(args.input_size)}, input {args.input_size}", flush=True)
        one_job(images[0], colorizer.infer, args.input_size)  # warm-up
        for count in [c for c in args.jobs if c > 1]:
            row = {"runtime": colorizer.runtime(args.input_size), "jobs": count, "forward_only": True,
                   **forward_only(colorizer, count, args.input_size, args.repeats)}
            results.append(row)
            print(f"  forward only, batch of {count}: {count} passes of one {row['passes_of_one_s']} s, one pass "
                  f"{row['one_batched_pass_s']} s -> throughput x{row['throughput_ratio']}  load {row['load_avg']}", flush=True)
        for count in args.jobs:
            jobs = [images[i % len(images)] for i in range(count)]
            one_by_one, together, loads, passes = [], [], [], []
            for repeat in range(args.repeats):
                order = ("sequential", "batched") if repeat % 2 == 0 else ("batched", "sequential")
                for way in order:
                    if way == "sequential":
                        one_by_one.append(sequential(colorizer, jobs, args.input_size))
                    else:
                        seconds, made = batched(colorizer, jobs, args.input_size, args.wait_ms / 1000)
                        together.append(seconds)
                        passes.append(made)
                loads.append(round(os.getloadavg()[0], 2))
            ratio = statistics.median(one_by_one) / statistics.median(together)
            row = {
                "runtime": colorizer.runtime(args.input_size),
                "jobs": count,
                "one_at_a_time_s": round(statistics.median(one_by_one), 2),
                "batched_s": round(statistics.median(together), 2),
                "throughput_ratio": round(ratio, 2),
                "passes_per_run": passes,
                "load_avg": loads,
            }
            results.append(row)
            print(f"  {count} jobs: one at a time {row['one_at_a_time_s']} s, batched {row['batched_s']} s "
                  f"(passes {passes}) -> throughput x{row['throughput_ratio']}  load {loads}", flush=True)
    report = {"machine": header, "command": " ".join(sys.argv), "model": args.model, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
