"""Measurements behind the cost model (src/oldphoto/engine/cost.py): seconds and peak memory of each node.

Each measurement runs in a fresh process that first imports what a worker process imports (torch, OpenCV, ncnn,
ONNX Runtime and the engine), so its memory is counted as a worker's would be:

- `base`: the resident memory of that process before any work (what every worker costs);
- for a node: its wall time, the growth of the peak resident memory (`ru_maxrss`) over the resident memory just
  before the node ran (its input image already allocated), and what it still holds afterwards (models it keeps).

DDColor runs twice per input size: `cold` exports the ONNX segments first (once per weights and size), `warm`
finds them on disk. Both DDColor networks are the real architectures with seeded random weights (the official
weights cannot be downloaded here; the compute is the same).

    .venv/bin/python benchmarks/cost_calibration.py [--quick]

The coefficients in cost.py were fitted by hand to this output (docs/jobs.md, "What a job may cost").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

MB = 1024 * 1024


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    """The peak resident memory since the last `_reset_peak` (VmHWM)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> None:
    """Start the peak over from the present resident memory (Linux 4.0+: `5` to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _image(width: int, height: int) -> Any:
    """A photo-like picture: smooth ramps with grain (PNG sizes and codec times like a scan's)."""
    import numpy as np

    rng = np.random.default_rng(0)
    ramp = np.linspace(30, 220, width, dtype=np.float32)[None, :, None] + np.linspace(-20, 20, height, dtype=np.float32)[:, None, None]
    grain = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    return np.clip(ramp + grain + np.array([0, 10, -10], np.float32), 0, 255).astype(np.uint8)


def measure(case: dict[str, Any]) -> dict[str, Any]:
    """One case, in this (fresh) process."""
    import cv2  # noqa: F401
    import ncnn  # noqa: F401
    import torch  # noqa: F401

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    import oldphoto.engine.nodes  # noqa: F401
    import oldphoto.jobs.work  # noqa: F401
    from oldphoto.engine.cancel import CancelToken
    from oldphoto.engine.context import NodeContext, RunOptions
    from oldphoto.engine.graph import NodeSpec
    from oldphoto.engine.nodes import NODE_TYPES
    from oldphoto.engine.reporter import Reporter
    from oldphoto.imaging import decode_file, encode_png
    from oldphoto.models.realesrgan import default_threads

    kind = case["kind"]
    if kind == "base":
        return {"rss_mb": _rss() / MB, "peak_mb": _peak() / MB}
    width, height = case["width"], case["height"]
    image = None if kind == "decode" else _image(width, height)
    _reset_peak()
    before, start, cpu = _rss(), time.perf_counter(), time.process_time()
    if kind == "decode":
        decode_file(case["path"], max_pixels=10**9)
    elif kind == "encode":
        encode_png(image)
    else:
        options = RunOptions(model=case.get("model", "ddcolor_paper_tiny"), models_dir=Path(case.get("models_dir", "/tmp")), device="cpu",
                             threads=default_threads(1))
        spec = NodeSpec("node", kind, {}, (), case.get("params", {}))
        node = NODE_TYPES[kind].build(spec)
        report = Reporter(lambda note: None, CancelToken()).for_node("node", node.source, 0.0, 1.0)
        node.run(NodeContext(report, options, image), image=image)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "cpu_s": time.process_time() - cpu,
        "before_mb": before / MB,
        "work_mb": (_peak() - before) / MB,
        "peak_mb": _peak() / MB,
        "kept_mb": (_rss() - before) / MB,
    }


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(case)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cases(folder: Path, quick: bool) -> list[tuple[str, dict[str, Any]]]:
    from oldphoto.imaging import encode_png
    from tests.helpers.checkpoints import write_large_checkpoint, write_tiny_checkpoint

    found: list[tuple[str, dict[str, Any]]] = [("worker process at rest", {"kind": "base"})]
    sizes = [(1000, 1000)] if quick else [(2000, 2000), (4000, 2500)]
    for width, height in sizes:
        path = folder / f"photo-{width}x{height}.png"
        path.write_bytes(encode_png(_image(width, height)))
        found.append((f"decode PNG {width}x{height}", {"kind": "decode", "width": width, "height": height, "path": str(path)}))
        found.append((f"encode PNG {width}x{height}", {"kind": "encode", "width": width, "height": height}))
    side = 300 if quick else 700
    for template, search in [(3, 5), (7, 21), (21, 21), (7, 45), (21, 45)]:
        params = {"strength": 10, "template_window": template, "search_window": search}
        found.append((f"Denoise {side}x{side} t{template} s{search}", {"kind": "Denoise", "width": side, "height": side, "params": params}))
    for radius in (1.5, 20.0):
        found.append((f"Sharpen 2000x2000 r{radius}", {"kind": "Sharpen", "width": 2000, "height": 2000, "params": {"radius": radius}}))
    upscales = [("realesr-animevideov3-x2", 512, 128), ("realesr-animevideov3-x2", 512, 256), ("realesr-animevideov3-x2", 512, 512),
                ("realesr-animevideov3-x4", 512, 256), ("realesrgan-x4plus", 128, 64), ("realesrgan-x4plus", 128, 128),
                ("realesrgan-x4plus-anime", 128, 128)]
    if quick:
        upscales = upscales[:1]
    for model, side, tile in upscales:
        found.append((f"Upscale {model} {side}x{side} tile {tile}", {"kind": "Upscale", "width": side, "height": side,
                                                                     "params": {"model": model, "tile": tile}}))
    models = {"tiny": write_tiny_checkpoint(folder / "ddcolor_tiny.pth")}
    if not quick:
        models["large"] = write_large_checkpoint(folder / "ddcolor_large.pth")
    ddcolor = [("tiny", 256, 1000), ("tiny", 512, 1000), ("tiny", 768, 1000), ("tiny", 256, 2000), ("large", 512, 1000)]
    for name, size, side in ddcolor[:1] if quick else ddcolor:
        for run in ("cold", "warm"):
            if run == "cold" and any(n == name and s == size for n, s, _ in ddcolor[: ddcolor.index((name, size, side))]):
                continue  # exported already by an earlier row
            found.append((f"DDColor {name} input {size} photo {side}x{side} {run}",
                          {"kind": "DDColor", "width": side, "height": side, "model": str(models[name]), "models_dir": str(folder),
                           "params": {"input_size": size}}))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small case of each kind")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return
    from benchmarks._common import print_header, table

    print_header("Cost model: seconds and memory per node")
    rows = []
    with tempfile.TemporaryDirectory(prefix="oldphoto-cost-") as folder:
        for label, case in cases(Path(folder), args.quick):
            result = run_case(case)
            row = [label, *(result.get(k) for k in ("seconds", "cpu_s", "before_mb", "work_mb", "kept_mb", "peak_mb", "rss_mb", "error"))]
            rows.append(row)
            print(json.dumps({"case": label, **result}), flush=True)
    print(table(["case", "seconds", "CPU seconds", "RSS before (MB)", "peak growth (MB)", "kept (MB)", "peak (MB)", "RSS at rest (MB)", "error"], rows))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
