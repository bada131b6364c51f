"""How much faster is the project's colorization than the authors' pipeline, and is it still the same picture?

The reference follows the authors' `ColorizationPipeline.process` exactly (tests/models/reference.py: BGR, OpenCV
Lab, cv2.resize, an eager float32 PyTorch forward of the network, `F.interpolate` nearest). The project runs
`oldphoto.models.ddcolor.colorize` in faithful mode (`ab_upsample="nearest"`) on the same weights, with each runtime
asked for (`exact`: the network's own forward; `torch`: block by block with the folded tail; `onnx`: ONNX Runtime
segments). Calls are interleaved (reference, then each runtime, the order turning every round) so a machine shared
with other work loads them alike; the answer is the ratio of medians, with the load average of every round.

Weights: the real architectures with seeded random weights (tests/helpers/checkpoints.py), tiny (ConvNeXt-T) and
large (ConvNeXt-L, the paper's), made once under --work; or official checkpoints with `--weights NAME=PATH`.
Photos: ../shared/photos (generated images when it is absent).

Run: .venv/bin/python benchmarks/colorize_speed.py [--models tiny large] [--runtimes torch onnx] [--rounds 5]
     [--input-size 512] [--cold] [--blocks] [--precision fast]
`--cold` deletes the exported graphs first, to time the first use (export); `--blocks` prints per-block times.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from oldphoto.models.cache import MODEL_CACHE  # noqa: E402
from oldphoto.models.ddcolor import build_network, colorize, load_colorizer, read_state_dict  # noqa: E402
from oldphoto.models.ddcolor.onnx import CACHE_FOLDER  # noqa: E402
from tests.models.reference import authors_pipeline  # noqa: E402

PHOTOS = REPO.parent / "shared" / "photos"
RESULTS = Path(__file__).parent / "results" / "colorize_speed.json"
CPU = torch.device("cpu")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "load_avg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = "absent"
    return info


def photos(limit: int | None) -> dict[str, np.ndarray]:
    found = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    images: dict[str, np.ndarray] = {}
    for path in found[:limit]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            images[path.stem] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if images:
        return images
    print(f"{PHOTOS} is absent: generated images instead")
    rng = np.random.default_rng(7)
    for height, width in ((600, 880), (750, 1000)):
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        gray = 128 + 90 * np.sin(x / 37.0) * np.cos(y / 23.0) + rng.normal(0, 6, (height, width))
        images[f"generated_{width}x{height}"] = np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    return images


def make_weights(model: str, work: Path) -> Path:
    from tests.helpers import checkpoints

    path = work / f"ddcolor_{model}_random.pth"
    if not path.is_file():
        print(f"making the {model} checkpoint (random weights) at {path} ...", flush=True)
        writer = {"tiny": checkpoints.write_tiny_checkpoint, "large": checkpoints.write_large_checkpoint}[model]
        writer(path)
    return path


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def prepare_runtime(weights: Path, runtime: str, input_size: int, cold: bool, precision: str = "faithful") -> dict[str, Any]:
    """Load and prepare a runtime as a worker does, timing the first use (export when --cold) and a reload."""
    if cold:
        shutil.rmtree(weights.parent / CACHE_FOLDER, ignore_errors=True)
    MODEL_CACHE.clear()
    load_s, (colorizer, _) = timed(lambda: load_colorizer(weights, CPU, runtime, precision=precision))
    exported = colorizer.needs_export(input_size)
    prepare_s, effective = timed(lambda: colorizer.prepare(input_size))
    return {"colorizer": colorizer, "load_s": round(load_s, 2), "prepare_s": round(prepare_s, 2), "exported": exported, "effective": effective}


def block_times(colorizer: Any, tensor: torch.Tensor) -> list[tuple[str, float]]:
    marks: list[tuple[str, float]] = []
    started = time.perf_counter()
    colorizer.infer(tensor, on_block=lambda i, t, name: marks.append((name, time.perf_counter())))
    out, last = [], started
    for name, at in marks:
        out.append((name, at - last))
        last = at
    return out


def bench_model(model: str, weights: Path, images: dict[str, np.ndarray], args: argparse.Namespace) -> dict[str, Any]:
    size = args.input_size
    print(f"\n== {model}: {weights.name}, input {size}, photos {len(images)}, rounds {args.rounds}", flush=True)
    network = build_network(read_state_dict(weights))  # the reference's own copy of the network, eager float32
    runtimes: dict[str, Any] = {}
    for runtime in args.runtimes:
        runtimes[runtime] = prepare_runtime(weights, runtime, size, args.cold, args.precision)
        info = runtimes[runtime]
        info["precision"] = info["colorizer"].precision_used(size).dtype
        print(f"  {runtime:6s} -> runs {info['effective']} in {info['precision']}: load {info['load_s']} s, "
              f"prepare {info['prepare_s']} s{' (exported)' if info['exported'] else ''}", flush=True)
        # A second process finds the export on disk: time loading it again (fresh object, same files).
        if info["effective"] == "onnx":
            MODEL_CACHE.clear()
            again = prepare_runtime(weights, runtime, size, False, args.precision)
            info["reload_prepare_s"] = again["prepare_s"]
            info["colorizer"] = again["colorizer"]
            print(f"         reload from the disk cache: prepare {again['prepare_s']} s", flush=True)
    MODEL_CACHE.clear()

    def reference(rgb: np.ndarray) -> np.ndarray:
        return authors_pipeline(rgb, network, size)

    methods: dict[str, Any] = {"reference": reference}
    for runtime, info in runtimes.items():
        colorizer = info["colorizer"]
        methods[runtime] = lambda rgb, c=colorizer: colorize(rgb, c, input_size=size, ab_upsample="nearest")

    # Warm-up and the differences (each method once per photo).
    diffs: dict[str, dict[str, Any]] = {name: {"max_level": 0, "pixels_differing": 0, "pixels": 0} for name in runtimes}
    for rgb in images.values():
        expected = reference(rgb)
        for name in runtimes:
            got = methods[name](rgb)
            delta = np.abs(got.astype(np.int16) - expected.astype(np.int16))
            diffs[name]["max_level"] = max(diffs[name]["max_level"], int(delta.max()))
            diffs[name]["pixels_differing"] += int((delta.max(axis=-1) > 0).sum())
            diffs[name]["pixels"] += delta.shape[0] * delta.shape[1]

    times: dict[str, list[float]] = {name: [] for name in methods}
    loads: list[float] = []
    order = list(methods)
    for round_index in range(args.rounds):
        turn = order[round_index % len(order):] + order[: round_index % len(order)]
        for rgb in images.values():
            for name in turn:
                seconds, _ = timed(lambda n=name: methods[n](rgb))
                times[name].append(seconds)
        loads.append(round(os.getloadavg()[0], 2))
        medians = {name: statistics.median(values) for name, values in times.items()}
        print(f"  round {round_index + 1}: load {loads[-1]:.2f}  " + "  ".join(f"{n} {m:.3f}s" for n, m in medians.items()), flush=True)

    medians = {name: statistics.median(values) for name, values in times.items()}
    result: dict[str, Any] = {
        "model": model,
        "weights": weights.name,
        "input_size": size,
        "photos": list(images),
        "rounds": args.rounds,
        "load_avg_per_round": loads,
        "median_s": {name: round(value, 3) for name, value in medians.items()},
        "speedup_vs_reference": {name: round(medians["reference"] / medians[name], 2) for name in runtimes},
        "difference_vs_reference": diffs,
        "prepare": {name: {k: v for k, v in info.items() if k != "colorizer"} for name, info in runtimes.items()},
    }
    print("  median seconds per photo: " + ", ".join(f"{n} {m:.3f}" for n, m in medians.items()))
    for name in runtimes:
        d = diffs[name]
        print(f"  {name}: {result['speedup_vs_reference'][name]:.2f}x the reference (ratio of medians); "
              f"max pixel difference {d['max_level']} level(s), {d['pixels_differing']} of {d['pixels']} pixels differ")
    if args.blocks:
        tensor = torch.rand(1, 1, size, size).expand(1, 3, size, size).contiguous()
        table: dict[str, list[tuple[str, float]]] = {}
        for name, info in runtimes.items():
            colorizer = info["colorizer"]
            block_times(colorizer, tensor)
            table[name] = block_times(colorizer, tensor)
        result["block_s"] = {name: [(b, round(s, 4)) for b, s in rows] for name, rows in table.items()}
        names = [b for b, _ in next(iter(table.values()))]
        print("  per block (s): " + " | ".join(table))
        for i, block in enumerate(names):
            print(f"    {block:24s} " + " ".join(f"{table[n][i][1]:8.3f}" for n in table))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "large"], choices=["tiny", "large"])
    parser.add_argument("--weights", nargs="*", default=[], help="NAME=PATH: official checkpoints instead of random ones")
    parser.add_argument("--runtimes", nargs="+", default=["onnx"], choices=["exact", "torch", "onnx", "auto"])
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "oldphoto" / "bench")
    parser.add_argument("--cold", action="store_true", help="delete exported graphs first (time the export)")
    parser.add_argument("--blocks", action="store_true", help="also time each block")
    parser.add_argument("--precision", choices=["faithful", "fast"], default="faithful",
                        help="fast: what `--precision fast` runs for each model on this machine (printed per runtime)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    header = machine()
    print("machine:", json.dumps(header))
    images = photos(args.photos)
    args.work.mkdir(parents=True, exist_ok=True)
    given = dict(item.split("=", 1) for item in args.weights)
    results = []
    for model in args.models:
        weights = Path(given[model]) if model in given else make_weights(model, args.work)
        results.append(bench_model(model, weights, images, args))
    report = {"machine": header, "command": " ".join(sys.argv), "results": results, "load_avg_end": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
