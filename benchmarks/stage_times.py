"""Time per stage of one colorize job, tiny and large DDColor, as the engine reports it.

Both networks are the real architectures with seeded random weights (the official weights cannot be downloaded
here; the compute is the same). Each size runs twice in one process: the first run loads the model (cold), the
second finds it in memory, as a worker's later jobs do.

    .venv/bin/python benchmarks/stage_times.py [--sizes tiny,large] [--input-size 512] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import print_header, table  # noqa: E402

STAGES = ("preprocess", "load_model", "inference", "postprocess")


def stage_seconds(checkpoint: Path, image, input_size: int) -> dict[str, float]:  # noqa: ANN001
    """Seconds from each stage's first event to the next stage's (postprocess: to the end of the run)."""
    from oldphoto.engine import Reporter, RunOptions, run_workflow, workflow_from_steps

    marks: list[tuple[str, float]] = []
    reporter = Reporter(lambda note: marks.append((note.stage, time.perf_counter())))
    options = RunOptions(model=str(checkpoint), input_size=input_size, ab_upsample="nearest")
    run_workflow(workflow_from_steps("colorize"), image, options=options, reporter=reporter)
    marks.append(("end", time.perf_counter()))
    first: dict[str, float] = {}
    for stage, at in marks:
        first.setdefault(stage, at)
    order = [s for s in STAGES if s in first] + ["end"]
    return {stage: first[nxt] - first[stage] for stage, nxt in zip(order, order[1:])}


def photo(quick: bool):  # noqa: ANN201
    import numpy as np

    from oldphoto.imaging import decode_file

    shared = REPO.parent / "shared" / "photos" / "detroit-circa-1915.jpg"
    if shared.is_file() and not quick:
        return decode_file(shared, max_pixels=40_000_000).rgb, shared.name
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), "generated 160x120"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,large")
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="tiny only, 128 px input, a generated image")
    args = parser.parse_args(argv)
    sizes = ["tiny"] if args.quick else args.sizes.split(",")
    input_size = 128 if args.quick else args.input_size
    print_header("DDColor: seconds per stage")
    from tests.helpers.checkpoints import write_large_checkpoint, write_tiny_checkpoint

    image, name = photo(args.quick)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            writer = write_tiny_checkpoint if size == "tiny" else write_large_checkpoint
            checkpoint = writer(Path(folder) / f"ddcolor_{size}.pth")
            runs = defaultdict(list)
            for run in ("cold", "warm"):
                seconds = stage_seconds(checkpoint, image, input_size)
                runs[run] = [seconds.get(s, 0.0) for s in STAGES]
                rows.append([size, run, *(f"{v:.3f}" for v in runs[run]), f"{sum(runs[run]):.3f}"])
            checkpoint.unlink()
    text = f"photo: {name}, model input {input_size}, ab_upsample nearest, 1 job at a time\n"
    text += table(["model", "run", *STAGES, "total"], rows)
    print(text)
    return text


if __name__ == "__main__":
    main()
