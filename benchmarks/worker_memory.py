"""How much memory a worker process holds before, during and after a job: a 4x upscale of a large photo, and a
DDColor colorization, each run in a real worker (`WorkerPool`, spawned as the service spawns them).

For each job the worker's resident set (RSS, read from outside with psutil) is taken when it is idle just before
the job, at its highest during the job (sampled every 10 ms), and once the worker is idle again (1 s after the
job's outcome, so whatever the worker does after a job is done). Each kind of job runs `--rounds` times in a fresh
worker of its own: the first round loads the model (and, for DDColor, exports its ONNX segments on first use),
later rounds find it in memory, as a worker's later jobs do.

    .venv/bin/python benchmarks/worker_memory.py [--size 1024] [--tiles 1024 256] [--ddcolor tiny] [--rounds 2] [--quick]

`--ddcolor large` runs the large architecture (ConvNeXt-L) instead of the tiny one; `--tiles` with no value and
`--no-colorize` leave out either kind of job.

The photo is one of ../shared/photos, resized to --size x --size; without it the script says so and stops (with
--quick it uses a generated image: a run only to show the script still works).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from benchmarks._common import MODELS_DIR, PHOTOS, load_avg, print_header, table, tiny_checkpoint  # noqa: E402

PHOTO = "nipomo-migrant-mother-1936.jpg"  # 1000x1247, the largest of the shared photos
UPSCALE_MODEL = "realesr-animevideov3-x4"  # the 4x net of the bundled ones that a 2-core CPU runs in seconds
MB = 2**20


@dataclass
class Measured:
    job: str
    round: int
    before_mb: float
    peak_mb: float
    after_mb: float
    seconds: float
    outcome: str


class Sampler:
    """The highest RSS of one process while it runs a job, sampled every 10 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def large_checkpoint() -> Path:
    """The real DDColor large architecture (ConvNeXt-L) with seeded random weights, cached beside the tiny one."""
    path = tiny_checkpoint().with_name("ddcolor_large_random.pth")
    if not path.is_file():
        from tests.helpers.checkpoints import write_large_checkpoint

        partial = path.with_suffix(f".{os.getpid()}.tmp")
        write_large_checkpoint(partial)
        partial.replace(path)
    return path


def upscale_workflow(model: str, tile: int) -> str:
    return json.dumps(
        {
            "1": {"class_type": "LoadImage", "inputs": {}},
            "2": {"class_type": "Upscale", "inputs": {"image": ["1", 0], "model": model, "tile": tile}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        }
    )


def colorize_workflow(input_size: int) -> str:
    return json.dumps(
        {
            "1": {"class_type": "LoadImage", "inputs": {}},
            "2": {"class_type": "DDColor", "inputs": {"image": ["1", 0], "input_size": input_size}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        }
    )


def write_photo(folder: Path, side: int, quick: bool) -> tuple[Path, str] | None:
    import cv2
    import numpy as np

    from oldphoto.imaging import decode_file, save_png

    shared = PHOTOS / PHOTO
    if shared.is_file():
        rgb = decode_file(shared, max_pixels=40_000_000).rgb
        rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_CUBIC if side > max(rgb.shape[:2]) else cv2.INTER_AREA)
        name = f"{PHOTO} resized to {side}x{side}"
    elif quick:
        rgb = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
        name = f"generated {side}x{side} noise (the shared photo is absent)"
    else:
        return None
    path = folder / f"photo-{side}.png"
    save_png(path, rgb, None)
    return path, name


def run_jobs(kind: str, workflow: str, photo: Path, rounds: int, options: Any, work: Path) -> list[Measured]:
    """`rounds` runs of one workflow, one after another, in a fresh worker of their own."""
    from oldphoto.jobs.messages import Done, Noted, Ready
    from oldphoto.jobs.work import WorkItem
    from oldphoto.jobs.workers import WorkerPool

    messages: queue.Queue[Any] = queue.Queue()
    pool = WorkerPool(1, messages.put, job_timeout_s=1800)
    pool.start()
    measured = []
    try:
        while not isinstance(messages.get(timeout=300), Ready):
            pass
        for number in range(1, rounds + 1):
            place = pool.idle()
            assert place is not None, "the worker is not ready"
            pid = place[0].process.pid
            before = psutil.Process(pid).memory_info().rss
            sampler = Sampler(pid)
            job_id = f"{kind.split()[0]}-{number}"
            started = time.perf_counter()
            pool.assign(place, WorkItem(job_id, str(photo), str(work / f"{job_id}.png"), workflow, options, 40_000_000))
            while isinstance(outcome := messages.get(timeout=1800), Noted):
                pass
            seconds = time.perf_counter() - started
            time.sleep(1.0)  # what the worker gives back after a job has time to go
            peak = sampler.stop()
            after = psutil.Process(pid).memory_info().rss
            said = "done" if isinstance(outcome, Done) else repr(outcome)
            measured.append(Measured(kind, number, before / MB, peak / MB, after / MB, seconds, said))
            print(f"  {kind} round {number}: before {before / MB:.0f} MB, peak {peak / MB:.0f} MB, after {after / MB:.0f} MB, "
                  f"{seconds:.1f} s, {said} (load {load_avg()})", flush=True)
    finally:
        pool.stop(timeout=10)
    return measured


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="the photo's side in pixels, for the upscale")
    parser.add_argument("--tiles", type=int, nargs="*", default=[1024, 256], help="Upscale tile sizes to run")
    parser.add_argument("--upscale-model", default=UPSCALE_MODEL)
    parser.add_argument("--input-size", type=int, default=512, help="DDColor's model input")
    parser.add_argument("--ddcolor", choices=["tiny", "large"], default="tiny", help="the DDColor architecture (seeded random weights)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-colorize", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a 96 px photo, tile 64, DDColor at 64 px, one round")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "worker_memory.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.tiles, args.input_size, args.rounds = 96, [64], 64, 1
    print_header("Worker memory before, during and after a job")
    from oldphoto.engine import RunOptions
    from oldphoto.models.realesrgan import default_threads

    rows: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="oldphoto-memory-") as folder:
        work = Path(folder)
        written = write_photo(work, args.size, args.quick)
        if written is None:
            text = f"skipped: the shared photo {PHOTOS / PHOTO} is absent (run with --quick for a generated image)"
            print(text)
            return text
        photo, name = written
        print(f"photo: {name}\n", flush=True)
        checkpoint = tiny_checkpoint() if args.ddcolor == "tiny" else large_checkpoint()
        options = RunOptions(model=str(checkpoint), models_dir=MODELS_DIR, runtime="onnx", threads=default_threads(1))
        for tile in args.tiles:
            kind = f"upscale {args.upscale_model} tile {tile}"
            rows += run_jobs(kind, upscale_workflow(args.upscale_model, tile), photo, args.rounds, options, work)
        if not args.no_colorize:
            colorize_photo = PHOTOS / PHOTO if (PHOTOS / PHOTO).is_file() and not args.quick else photo
            kind = f"colorize ddcolor {args.ddcolor} {args.input_size} px"
            rows += run_jobs(kind, colorize_workflow(args.input_size), colorize_photo, args.rounds, options, work)
    text = table(
        ["job", "round", "RSS before MB", "peak MB", "after MB", "after - before MB", "job s", "outcome"],
        [[m.job, m.round, m.before_mb, m.peak_mb, m.after_mb, m.after_mb - m.before_mb, m.seconds, m.outcome] for m in rows],
    )
    print(f"\n{text}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([m.__dict__ for m in rows], indent=1))
    return text


if __name__ == "__main__":
    main()
