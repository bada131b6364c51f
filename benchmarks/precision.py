"""Fast against faithful precision on the CPU: what a person would see (CIEDE2000) and what it gains, per model.

Faithful is what `OLDPHOTO_PRECISION=faithful` runs: the default runtime (`auto`: ONNX Runtime segments in float32
on the CPU). Fast is what `fast` would run on this CPU whatever precision.py's table says (the table is made from
this benchmark): the torch segments with the blocks of `--blocks` in bfloat16 (autocast, their weights stored in
bfloat16), the rest in float32. Both run the whole pipeline (`colorize`, ab upsampled as the server does) on the
same photos; per photo the ΔE00 between the two results (mean, 99th percentile, largest), then both are timed
side by side, interleaved, the order turning every round, and the speed-up is the ratio of medians.

A model is recommended for fast when, on every photo, mean ΔE00 < 1.0 and p99 < 2.5 (precision.py's limits) and
fast is at least `MIN_SPEEDUP` faster; precision.py's `CPU_BF16` table should say the same (the script says so).

Weights: the real architectures with seeded random weights (tests/helpers/checkpoints.py), the official ones cannot
be downloaded here. Random weights exercise the same arithmetic, with ab spread like real predictions (a standard
deviation of 20), but real weights predict other colours: the ΔE00 here is a measurement of this arithmetic on
these photos, not a promise for real weights (rerun with `--weights tiny=PATH large=PATH` where they are at hand).

Photos: ../shared/photos; without them the script says so and stops (exit 0).

Run: .venv/bin/python benchmarks/precision.py [--models tiny large] [--rounds 3] [--input-size 512]
     [--blocks encoder. decoder.upsample] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

from benchmarks._colour import difference  # noqa: E402
from benchmarks._common import MODELS_DIR, PHOTOS, large_checkpoint, table, tiny_checkpoint  # noqa: E402
from oldphoto.models.ddcolor import Colorizer, build_network, colorize, read_state_dict  # noqa: E402
from oldphoto.models.ddcolor.precision import (  # noqa: E402
    CPU_BF16,
    LOW_PRECISION_BLOCKS,
    MAX_MEAN_DE00,
    MAX_P99_DE00,
    Measured,
    PrecisionPlan,
    candidate_dtype,
    cpu_flags,
    encoder_name,
)

CPU = torch.device("cpu")
RESULTS = REPO / "benchmarks" / "results" / "precision.json"


@dataclass
class PhotoResult:
    photo: str
    size: str
    mean: float
    p99: float
    max: float


@dataclass
class ModelResult:
    model: str
    encoder: str | None
    dtype: str
    photos: list[PhotoResult] = field(default_factory=list)
    faithful_s: float = 0.0  # median seconds per round (all photos)
    fast_s: float = 0.0
    load_avg: list[str] = field(default_factory=list)
    prepare_faithful_s: float = 0.0
    prepare_fast_s: float = 0.0
    fast_extra_mb: float = 0.0  # resident memory the fast engine added (its lowered weight copies)

    @property
    def speedup(self) -> float:
        return self.faithful_s / self.fast_s if self.fast_s else 0.0

    @property
    def measured(self) -> Measured:
        """The worst photo's numbers, as precision.py's table keeps them."""
        return Measured(max(p.mean for p in self.photos), max(p.p99 for p in self.photos), round(self.speedup, 2))


def load_photos(limit: int | None, max_side: int | None) -> dict[str, np.ndarray]:
    found = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    images: dict[str, np.ndarray] = {}
    for path in found[:limit]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        if max_side and max(bgr.shape[:2]) > max_side:
            scale = max_side / max(bgr.shape[:2])
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        images[path.stem] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return images


def weights_for(model: str, given: dict[str, Path], layer_scale: float | None) -> Path:
    if model in given:
        return given[model]
    weights = {"tiny": tiny_checkpoint, "large": large_checkpoint}[model]()
    return weights if layer_scale is None else with_layer_scale(weights, layer_scale)


def with_layer_scale(weights: Path, value: float) -> Path:
    """The checkpoint with every ConvNeXt layer scale (`gamma`) set to `value`, written once beside it.

    ConvNeXt multiplies each block's residual branch by a learned per-channel `gamma`, initialised to 1e-6; the
    random checkpoints keep that, so their encoder blocks add almost nothing and an error made inside them (in
    bfloat16) never reaches the output. Trained encoders have layer scales of order 0.1-1; this puts the blocks'
    arithmetic back on the path, so the colour difference measures it (the spread of ab hardly moves: 18.8-19.0
    against 20 for gamma from 1e-6 to 1, tiny).
    """
    path = weights.with_name(f"{weights.stem}_ls{value:g}{weights.suffix}")
    if not path.is_file():
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        state = checkpoint["params"]
        for key in state:
            if key.endswith(".gamma"):
                state[key] = torch.full_like(state[key], value)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(checkpoint, tmp)
        tmp.replace(path)
    return path


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def colorizers(weights: Path, dtype: str, blocks: tuple[str, ...], input_size: int) -> tuple[Colorizer, Colorizer, dict[str, float]]:
    """Faithful (the default runtime) and fast (torch segments, lowered blocks) on one network, both prepared."""
    network = build_network(read_state_dict(weights), source=str(weights))
    faithful = Colorizer(network, CPU, source=weights, runtime="auto", cache_dir=MODELS_DIR)
    fast = Colorizer(network, CPU, runtime="torch")
    fast.use_runtime("torch", precision=PrecisionPlan(requested="fast", dtype=dtype, reason="fast", blocks=blocks))  # type: ignore[arg-type]
    prepare_faithful, _ = timed(lambda: faithful.prepare(input_size))
    rss = psutil.Process().memory_info().rss
    prepare_fast, _ = timed(lambda: fast.prepare(input_size))
    extra_mb = (psutil.Process().memory_info().rss - rss) / 2**20
    used = fast.precision_used(input_size)
    if used.dtype != dtype:
        raise RuntimeError(f"the fast colorizer runs {used.dtype} ({used.reason}), not {dtype}")
    info = {"prepare_faithful_s": prepare_faithful, "prepare_fast_s": prepare_fast, "fast_extra_mb": extra_mb}
    return faithful, fast, info


def measure_model(model: str, weights: Path, photos: dict[str, np.ndarray], dtype: str, args: argparse.Namespace) -> ModelResult:
    size = args.input_size
    print(f"\n== {model}: {weights.name}, input {size}, {len(photos)} photos, {args.rounds} rounds, {dtype} on {', '.join(args.blocks)}", flush=True)
    faithful, fast, info = colorizers(weights, dtype, tuple(args.blocks), size)
    print(f"  faithful runs {faithful.runtime(size)} (prepared in {info['prepare_faithful_s']:.1f} s); fast runs "
          f"{fast.runtime(size)} {dtype} (prepared in {info['prepare_fast_s']:.1f} s, +{info['fast_extra_mb']:.0f} MB)", flush=True)
    result = ModelResult(model, encoder_name(faithful.network), dtype, **{k: round(v, 2) for k, v in info.items()})

    def run(colorizer: Colorizer, rgb: np.ndarray) -> np.ndarray:
        return colorize(rgb, colorizer, input_size=size, ab_upsample=args.ab_upsample)

    for name, rgb in photos.items():  # also the first (warm-up) call of each
        diff = difference(run(faithful, rgb), run(fast, rgb))
        result.photos.append(PhotoResult(name, f"{rgb.shape[1]}x{rgb.shape[0]}", round(diff.mean, 3), round(diff.p99, 3), round(diff.max, 2)))
        print(f"  {name}: ΔE00 mean {diff.mean:.3f}, p99 {diff.p99:.3f}, max {diff.max:.2f}", flush=True)
    totals: dict[str, list[float]] = {"faithful": [], "fast": []}
    for round_index in range(args.rounds):
        order = [("faithful", faithful), ("fast", fast)]
        for label, colorizer in order if round_index % 2 == 0 else order[::-1]:
            seconds, _ = timed(lambda colorizer=colorizer: [run(colorizer, rgb) for rgb in photos.values()])
            totals[label].append(seconds)
        result.load_avg.append(f"{os.getloadavg()[0]:.2f}")
        print(f"  round {round_index + 1}: faithful {totals['faithful'][-1]:.2f} s, fast {totals['fast'][-1]:.2f} s, load {result.load_avg[-1]}", flush=True)
    result.faithful_s = round(statistics.median(totals["faithful"]) / len(photos), 3)
    result.fast_s = round(statistics.median(totals["fast"]) / len(photos), 3)
    return result


def report(results: list[ModelResult], args: argparse.Namespace) -> list[str]:
    lines = [
        "",
        "ΔE00 between fast and faithful results (whole pipeline, ab upsampled "
        f"{args.ab_upsample}, model input {args.input_size}; limits: mean < {MAX_MEAN_DE00}, p99 < {MAX_P99_DE00}):",
        "",
        table(
            ["model", "photo", "size", "ΔE00 mean", "ΔE00 p99", "ΔE00 max"],
            [[r.model, p.photo, p.size, f"{p.mean:.3f}", f"{p.p99:.3f}", f"{p.max:.2f}"] for r in results for p in r.photos],
        ),
        "",
        "Speed, whole pipeline per photo (median of rounds, interleaved):",
        "",
        table(
            ["model", "fast dtype", "faithful s", "fast s", "speed-up", "fast engine +MB", "load avg (rounds)", "verdict"],
            [[r.model, r.dtype, r.faithful_s, r.fast_s, f"{r.speedup:.2f}x", round(r.fast_extra_mb), " ".join(r.load_avg), r.measured.reason]
             for r in results],
        ),
        "",
    ]
    for r in results:
        measured = r.measured
        advice = "OLDPHOTO_PRECISION=fast is worth it" if measured.reason == "fast" else f"keep faithful ({measured.reason})"
        lines.append(f"recommendation for {r.model} ({r.encoder}): {advice}: worst photo mean {measured.mean_de00:.3f}, "
                     f"p99 {measured.p99_de00:.3f}, {r.speedup:.2f}x")
        table_entry = CPU_BF16.get(r.encoder or "")
        said = table_entry.reason if table_entry else "unmeasured_model"
        agree = "agrees" if said == measured.reason else "DIFFERS: update CPU_BF16 in precision.py"
        lines.append(f"  precision.py's table says {said} for {r.encoder}: {agree}")
    return lines


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "large"], choices=["tiny", "large"])
    parser.add_argument("--weights", nargs="*", default=[], metavar="MODEL=PATH", help="official checkpoints instead of random weights")
    parser.add_argument("--photos", type=int, default=None, help="at most this many photos of ../shared/photos")
    parser.add_argument("--max-side", type=int, default=None, help="shrink photos to this many pixels on their longer side")
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ab-upsample", default="bilinear", choices=["nearest", "bilinear"], help="bilinear, as the server runs")
    parser.add_argument("--layer-scale", type=float, default=None,
                        help="set the encoder's ConvNeXt layer scales (1e-6 in the random checkpoints) to this, as trained ones are")
    parser.add_argument("--blocks", nargs="+", default=list(LOW_PRECISION_BLOCKS), help="name prefixes of the blocks run in bfloat16")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of both runtimes (default: PyTorch's, one per core)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny, 1 photo shrunk to 256 px, input 128, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.photos, args.max_side, args.input_size, args.rounds = ["tiny"], 1, 256, 128, 1
    return args


def header() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?") \
        if Path("/proc/cpuinfo").is_file() else "?"
    flags = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"})
    return [
        "# Precision: fast against faithful",
        "",
        f"machine: {cpu}, {os.cpu_count()} cores (flags: {' '.join(flags) or 'none of avx512f/avx512_bf16/amx'}); "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); load average at start {os.getloadavg()[0]:.2f}",
        "weights: the real architectures with seeded random weights (official weights cannot be downloaded here)",
    ]


def main(argv: list[str] | None = None) -> str:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # ONNX Runtime's sessions take the same number (colorizer.py)
    lines = header()
    print("\n".join(lines), flush=True)
    photos = load_photos(args.photos, args.max_side)
    dtype = candidate_dtype("cpu")
    if not photos or dtype == "float32":
        why = f"no photos in {PHOTOS}" if not photos else "this CPU has no native bfloat16 (fast is float32 here)"
        lines.append(f"skipped: {why}")
        print(lines[-1])
        return "\n".join(lines)
    given = {k: Path(v) for k, _, v in (item.partition("=") for item in args.weights)}
    results = [measure_model(model, weights_for(model, given, args.layer_scale), photos, dtype, args) for model in args.models]
    said = report(results, args)
    print("\n".join(said), flush=True)
    lines += said
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": [asdict(r) for r in results]}, indent=2))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
