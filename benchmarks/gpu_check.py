"""The GPU path checked on a real GPU, in one run of under 5 minutes: what `OLDPHOTO_PRECISION` and the batch size
should be there.

For tiny and large (the real architectures with seeded random weights, or `--weights tiny=PATH large=PATH`) at model
inputs 256 and 512, the `torch` segment runtime in float32 (faithful), float16 (what fast runs on CUDA) and bfloat16:

- colour: CIEDE2000 of each low precision's result against float32's (whole pipeline, ab upsampled bilinear, on a
  photo of ../shared/photos or a generated one), mean / p99 / max, against precision.py's limits (mean < 1.0,
  p99 < 2.5); and whether the float16 probe of colorizer.py (ab within HALF_TOLERANCE_AB) accepts it;
- time per pass (median, batch of 1) and the speed-up over float32; peak GPU memory per model and input size
  (`torch.cuda.max_memory_allocated`);
- throughput at batch 1, 4 and 8 (images/s, input 512);
- cancel latency: a cancel set from another thread at a random moment of a pass, to the pass stopping between two
  blocks (the runtime waits for each block on a GPU, so this is at most one block's time).

It ends with the settings it recommends. Random weights: the colour numbers measure this arithmetic on these weights
(their ConvNeXt layer scales are 1e-6, as initialised: `--layer-scale 0.5` puts trained-like ones in); official
weights where they are at hand are better. The speed and memory numbers do not depend on the weights' values.

Run on a GPU machine: .venv/bin/python benchmarks/gpu_check.py            (defaults: --device cuda)
Here (no GPU), the smoke test: .venv/bin/python benchmarks/gpu_check.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._colour import difference  # noqa: E402
from benchmarks._common import PHOTOS, large_checkpoint, table, tiny_checkpoint  # noqa: E402
from oldphoto.errors import Cancelled  # noqa: E402
from oldphoto.models.ddcolor import Colorizer, build_network, colorize, read_state_dict  # noqa: E402
from oldphoto.models.ddcolor import colorizer as colorizer_module  # noqa: E402
from oldphoto.models.ddcolor.precision import MAX_MEAN_DE00, MAX_P99_DE00, MIN_SPEEDUP, PrecisionPlan  # noqa: E402

DTYPES = ("float32", "float16", "bfloat16")
RESULTS = REPO / "benchmarks" / "results" / "gpu_check.json"
# Throughput within this share of the best counts as the best (a smaller batch holds less memory and waits less).
BATCH_SHARE = 0.9


@dataclass
class PassResult:
    model: str
    dtype: str
    size: int
    probe: str  # the float16 probe's verdict ("-" for the others)
    mean: float | None
    p99: float | None
    max: float | None
    ms: float
    speedup: float
    peak_mb: float | None


@dataclass
class BatchResult:
    model: str
    dtype: str
    batch: int
    images_per_s: float
    gain: float  # over batch 1
    peak_mb: float | None


@dataclass
class CancelResult:
    model: str
    dtype: str
    trials: int
    p50_ms: float
    max_ms: float
    pass_ms: float


class Clock:
    """The run's time budget: later measurements are skipped, and said so, once it is spent."""

    def __init__(self, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s

    def left(self) -> float:
        return self.deadline - time.monotonic()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def median_ms(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    fn()  # warm-up: kernels chosen, memory pools filled
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def photo(max_side: int | None) -> tuple[str, np.ndarray]:
    found = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    bgr = cv2.imread(str(found[0]), cv2.IMREAD_COLOR) if found else None
    if bgr is None:
        y, x = np.mgrid[0:600, 0:880].astype(np.float32)
        gray = np.clip(128 + 90 * np.sin(x / 37.0) * np.cos(y / 23.0), 0, 255).astype(np.uint8)
        name, rgb = "generated 880x600", np.repeat(gray[:, :, None], 3, axis=2)
    else:
        name, rgb = found[0].stem, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if max_side and max(rgb.shape[:2]) > max_side:
        scale = max_side / max(rgb.shape[:2])
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return name, rgb


def network_for(model: str, given: dict[str, Path], layer_scale: float | None) -> torch.nn.Module:
    weights = given.get(model) or {"tiny": tiny_checkpoint, "large": large_checkpoint}[model]()
    network = build_network(read_state_dict(weights), source=str(weights))
    if layer_scale is not None:
        with torch.no_grad():
            for name, parameter in network.named_parameters():
                if name.endswith(".gamma"):
                    parameter.fill_(layer_scale)
    return network


def colorizer_in(network: torch.nn.Module, device: torch.device, dtype: str, size: int, *, force: bool = False) -> Colorizer:
    """The torch segment runtime in this format on the blocks fast lowers, prepared for this input size; `force`
    measures float16 as it is, whatever the probe says (the probe's own verdict is `probe_verdict`'s)."""
    colorizer = Colorizer(network, device, runtime="torch")
    requested = "faithful" if dtype == "float32" else "fast"
    plan = PrecisionPlan(requested=requested, dtype=dtype, reason=requested)  # type: ignore[arg-type]
    colorizer.use_runtime("torch", precision=plan)
    saved = colorizer_module.HALF_TOLERANCE_AB
    if force:
        colorizer_module.HALF_TOLERANCE_AB = float("inf")
    try:
        colorizer.prepare(size)
    finally:
        colorizer_module.HALF_TOLERANCE_AB = saved
    return colorizer


def probe_verdict(network: torch.nn.Module, device: torch.device, size: int) -> str:
    """Whether colorizer.py's float16 probe accepts float16 for this network at this size, as a worker would see it."""
    used = colorizer_in(network, device, "float16", size).precision_used(size)
    return "accepted" if used.dtype == "float16" else "refused"


def measure_passes(model: str, network: torch.nn.Module, device: torch.device, image: np.ndarray, args: argparse.Namespace,
                   clock: Clock) -> list[PassResult]:
    results: list[PassResult] = []
    for size in args.sizes:
        reference: np.ndarray | None = None
        base_ms = 0.0
        for dtype in args.dtypes:
            if clock.left() < 0:
                print(f"  {model} {dtype} {size}: skipped (time budget spent)", flush=True)
                continue
            probe = probe_verdict(network, device, size) if dtype == "float16" else "-"
            peak_reset(device)
            colorizer = colorizer_in(network, device, dtype, size, force=True)
            out = colorize(image, colorizer, input_size=size, ab_upsample="bilinear")
            x = torch.rand(1, 1, size, size).expand(1, 3, size, size).contiguous()
            ms = median_ms(lambda c=colorizer, x=x: c.infer(x), device, args.repeats)
            if dtype == "float32":
                reference, base_ms = out, ms
                diff = None
            else:
                diff = difference(reference, out) if reference is not None else None
            row = PassResult(model, dtype, size, probe, *(round(v, 3) for v in (diff.mean, diff.p99, diff.max)) if diff else (None,) * 3,
                             ms, round(base_ms / ms, 2) if base_ms else 1.0, peak_mb(device))
            results.append(row)
            colour = f"ΔE00 {row.mean} / {row.p99} / {row.max}" if diff else "the reference"
            print(f"  {model} {dtype} {size}: {ms} ms, {colour}, float16 probe {probe}, peak {row.peak_mb or '-'} MB", flush=True)
            del colorizer
    return results


def measure_batches(model: str, network: torch.nn.Module, device: torch.device, dtypes: list[str], args: argparse.Namespace,
                    clock: Clock) -> list[BatchResult]:
    results: list[BatchResult] = []
    size = max(args.sizes)
    for dtype in dtypes:
        colorizer = colorizer_in(network, device, dtype, size, force=True)
        base = 0.0
        for batch in args.batches:
            if clock.left() < 0:
                print(f"  {model} {dtype} batch {batch}: skipped (time budget spent)", flush=True)
                continue
            x = torch.rand(batch, 1, size, size).expand(batch, 3, size, size).contiguous()
            peak_reset(device)
            try:
                ms = median_ms(lambda c=colorizer, x=x: c.infer(x), device, args.repeats)
            except Exception as exc:  # out of memory at this batch: said, and the larger ones skipped
                print(f"  {model} {dtype} batch {batch}: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
                break
            rate = round(batch / (ms / 1000), 2)
            base = base or rate
            results.append(BatchResult(model, dtype, batch, rate, round(rate / base, 2), peak_mb(device)))
            print(f"  {model} {dtype} batch {batch}: {rate} images/s", flush=True)
    return results


def measure_cancel(model: str, network: torch.nn.Module, device: torch.device, dtype: str, args: argparse.Namespace) -> CancelResult:
    """A cancel flag set from another thread at a random moment of a pass; the pass checks it after each block."""
    size = max(args.sizes)
    colorizer = colorizer_in(network, device, dtype, size, force=True)
    x = torch.rand(1, 1, size, size).expand(1, 3, size, size).contiguous()
    pass_ms = median_ms(lambda: colorizer.infer(x), device, 1)
    rng = random.Random(7)
    latencies = []
    for _ in range(args.cancel_trials):
        flag = threading.Event()
        set_at: list[float] = []

        def on_block(index: int, total: int, name: str, flag: threading.Event = flag) -> None:
            if flag.is_set():
                raise Cancelled()

        def cancel(flag: threading.Event = flag, set_at: list[float] = set_at) -> None:
            set_at.append(time.perf_counter())
            flag.set()

        timer = threading.Timer(rng.uniform(0.1, 0.8) * pass_ms / 1000, cancel)
        timer.start()
        try:
            colorizer.infer(x, on_block=on_block)
        except Cancelled:
            latencies.append((time.perf_counter() - set_at[0]) * 1000)
        timer.join()
    if not latencies:
        return CancelResult(model, dtype, 0, float("nan"), float("nan"), pass_ms)
    return CancelResult(model, dtype, len(latencies), round(statistics.median(latencies), 2), round(max(latencies), 2), pass_ms)


def recommend(passes: list[PassResult], batches: list[BatchResult], device: torch.device) -> list[str]:
    lines = []
    for model in dict.fromkeys(p.model for p in passes):
        half = [p for p in passes if p.model == model and p.dtype == "float16"]
        ok = bool(half) and all(p.mean is not None and p.mean < MAX_MEAN_DE00 and p.p99 is not None and p.p99 < MAX_P99_DE00 for p in half)
        faster = bool(half) and min(p.speedup for p in half) >= MIN_SPEEDUP
        accepted = bool(half) and all(p.probe == "accepted" for p in half)
        if ok and faster and accepted:
            lines.append(f"OLDPHOTO_PRECISION=fast    # {model}: float16 keeps colours (worst mean {max(p.mean or 0 for p in half):.3f}, "
                         f"p99 {max(p.p99 or 0 for p in half):.3f}) and runs {min(p.speedup for p in half):.2f}x or more")
        else:
            why = "colours beyond the limits" if not ok else "not faster" if not faster else "the probe refuses float16"
            lines.append(f"OLDPHOTO_PRECISION=faithful    # {model}: float16 {why}" if half else f"# {model}: float16 not measured")
        bf16 = [p for p in passes if p.model == model and p.dtype == "bfloat16"]
        if bf16 and not ok and all(p.mean is not None and p.mean < MAX_MEAN_DE00 and p.p99 is not None and p.p99 < MAX_P99_DE00 for p in bf16):
            lines.append(f"#   bfloat16 keeps colours for {model} on this GPU: fast could use it here (precision.py uses float16 on CUDA)")
    for model in dict.fromkeys(b.model for b in batches):
        rows = [b for b in batches if b.model == model and b.dtype == "float32"] or [b for b in batches if b.model == model]
        best = max(b.images_per_s for b in rows)
        chosen = min((b for b in rows if b.images_per_s >= BATCH_SHARE * best), key=lambda b: b.batch)
        value = chosen.batch if chosen.gain >= 1.2 else 1
        lines.append(f"OLDPHOTO_BATCH_MAX={value}    # {model} on {device}: batch {chosen.batch} gives {chosen.gain:.2f}x batch 1's "
                     f"throughput ({chosen.images_per_s} images/s){'' if value > 1 else '; too little to wait for others'}")
    return lines


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--models", nargs="+", default=["tiny", "large"], choices=["tiny", "large"])
    parser.add_argument("--weights", nargs="*", default=[], metavar="MODEL=PATH")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cancel-trials", type=int, default=10)
    parser.add_argument("--layer-scale", type=float, default=None, help="set the ConvNeXt layer scales (1e-6 in random weights)")
    parser.add_argument("--budget-s", type=float, default=270, help="measurements left when this is spent are skipped")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny, input 64, batches 1 and 2, 1 repeat, 2 cancels")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.sizes, args.batches, args.repeats, args.cancel_trials = ["tiny"], [64], [1, 2], 1, 2
    if "float32" not in args.dtypes:
        args.dtypes.insert(0, "float32")  # the reference of every comparison
    return args


def header(device: torch.device) -> list[str]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        what = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    else:
        what = f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    return ["# GPU check: float32, float16 and bfloat16 on the segment runtime", "", f"device: {device} ({what}); torch {torch.__version__}"]


def main(argv: list[str] | None = None) -> str:
    args = parse(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu (--quick) to check the script itself")
        return "no CUDA device"
    clock = Clock(args.budget_s)
    lines = header(device)
    print("\n".join(lines), flush=True)
    name, image = photo(256 if args.quick else None)
    print(f"photo: {name} ({image.shape[1]}x{image.shape[0]})", flush=True)
    given = {k: Path(v) for k, _, v in (item.partition("=") for item in args.weights)}
    passes: list[PassResult] = []
    batches: list[BatchResult] = []
    cancels: list[CancelResult] = []
    for model in args.models:
        started = time.monotonic()
        network = network_for(model, given, args.layer_scale)
        print(f"\n== {model}: network ready in {time.monotonic() - started:.1f} s", flush=True)
        passes += measure_passes(model, network, device, image, args, clock)
        batches += measure_batches(model, network, device, ["float32", *(["float16"] if "float16" in args.dtypes else [])], args, clock)
        for dtype in ["float32", *(["float16"] if "float16" in args.dtypes else [])]:
            if clock.left() > 0:
                cancels.append(measure_cancel(model, network, device, dtype, args))
        del network
    said = [
        "",
        f"Per pass (batch 1) against float32 (ΔE00 limits: mean < {MAX_MEAN_DE00}, p99 < {MAX_P99_DE00}):",
        "",
        table(["model", "dtype", "input", "float16 probe", "ΔE00 mean", "ΔE00 p99", "ΔE00 max", "ms per pass", "speed-up", "peak MB"],
              [[p.model, p.dtype, p.size, p.probe, p.mean, p.p99, p.max, p.ms, f"{p.speedup:.2f}x", p.peak_mb] for p in passes]),
        "",
        f"Throughput at input {max(args.sizes)}:",
        "",
        table(["model", "dtype", "batch", "images/s", "x batch 1", "peak MB"],
              [[b.model, b.dtype, b.batch, b.images_per_s, f"{b.gain:.2f}x", b.peak_mb] for b in batches]),
        "",
        f"Cancel latency at input {max(args.sizes)} (a cancel at a random moment of a pass, to the pass stopping):",
        "",
        table(["model", "dtype", "cancels", "p50 ms", "max ms", "pass ms"], [[c.model, c.dtype, c.trials, c.p50_ms, c.max_ms, c.pass_ms] for c in cancels]),
        "",
        "Recommended settings for this machine:",
        "",
        *recommend(passes, batches, device),
    ]
    print("\n".join(said), flush=True)
    lines += said
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": str(device), "passes": [asdict(p) for p in passes], "batches": [asdict(b) for b in batches],
                                    "cancels": [asdict(c) for c in cancels]}, indent=2))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
