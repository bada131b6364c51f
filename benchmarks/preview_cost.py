"""What live previews cost: in the worker (per tile landed, per picture sent), in the recorder (per preview against a
plain progress note), and in the web process (its event loop's lag while previewing jobs run), this design against
`--before DIR` (another copy of `src/`, e.g. `git archive <commit> src | tar -x -C DIR`).

The worker part upscales nothing: it pastes random tiles of a 4000 x 3000 output into a preview canvas and sends the
picture, as the Upscale node does per tile. The recorder part records into a SQLite store in a scratch folder. The
server part runs `--jobs` upscale jobs in 32-pixel tiles (many tiles, so a preview every half second) one after
another on a real `oldphoto serve` and reads /metrics and the log afterwards.

Run: .venv/bin/python benchmarks/preview_cost.py [--jobs 3] [--before DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    MODELS_DIR,
    load_avg,
    median,
    png_bytes,
    print_header,
    scratch_dir,
    start_server,
    submit,
    table,
    tiny_checkpoint,
    wait_status,
)

SMALL_TILES = json.dumps(
    {
        "nodes": [
            {"id": "load", "type": "LoadImage"},
            {"id": "up", "type": "Upscale", "inputs": {"image": "load.image"}, "widgets_values": ["realesr-animevideov3-x2", 32]},
            {"id": "save", "type": "SaveImage", "inputs": {"images": "up.image"}},
        ]
    }
)


def worker_side(rounds: int) -> dict[str, float]:
    import numpy as np

    from oldphoto.engine.previews import Canvas, Previews
    from oldphoto.engine.reporter import Reporter
    from oldphoto.models.realesrgan import tile_boxes

    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    out = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    report = Reporter(sink=lambda note: None).for_node("up", "upscale", 0.0, 1.0)
    sizes: list[int] = []
    previews = Previews(lambda note, data: sizes.append(len(data)), min_gap_s=0.0)
    started = time.perf_counter()
    canvas = Canvas(source, 3000, 4000)
    start_ms = (time.perf_counter() - started) * 1000
    boxes = tile_boxes(1500, 2000, 256)
    paste_ms, send_ms = [], []
    for _ in range(rounds):
        for top, left, bottom, right in boxes:
            t0 = time.perf_counter()
            canvas.paste(top * 2, left * 2, out[top * 2 : bottom * 2, left * 2 : right * 2])
            paste_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        previews.offer(report, canvas.picture)
        send_ms.append((time.perf_counter() - t0) * 1000)
    return {"start_ms": start_ms, "paste_ms": median(paste_ms), "send_ms": median(send_ms), "jpeg_bytes": median(sizes)}


def recorder_side(count: int) -> dict[str, float]:
    from oldphoto.jobs.lifecycle import JobStatus
    from oldphoto.jobs.messages import Noted, Previewed
    from oldphoto.jobs.recorder import Recorder
    from oldphoto.jobs.store import JobStore, NewJob
    from oldphoto.protocol import JobEvent, Note, PreviewImage

    store = JobStore(f"sqlite:///{scratch_dir('preview-recorder') / 'jobs.sqlite3'}")
    recorder = Recorder(store, lambda event: None, Path("/nonexistent"), job_timeout_s=600)
    job = store.create(NewJob("bench", "{}", "/nowhere"), JobEvent(job_id="x", seq=1, stage="upload", message_key="upload", progress=0))
    store.set_status(job.id, JobStatus.RUNNING)
    recorder.started(job.id, 0)
    picture = os.urandom(15_000)
    timings: dict[str, list[float]] = {"note": [], "preview": []}
    for i in range(count):
        note = Note(stage="inference", source="upscale", node="up", message_key="upscale.tile", message_params={"index": i, "total": count}, progress=50)
        preview = note.model_copy(update={"type": "preview", "preview": PreviewImage(width=256, height=192, frame=i + 1)})
        for kind, message in (("note", Noted(job.id, note)), ("preview", Previewed(job.id, preview, picture))):
            t0 = time.perf_counter()
            recorder.on_message(message)
            timings[kind].append((time.perf_counter() - t0) * 1000)
    store.close()
    return {"note_ms": median(timings["note"]), "preview_ms": median(timings["preview"])}


def server_side(name: str, source: str | None, jobs: int, size: tuple[int, int]) -> dict[str, Any]:
    if source:
        os.environ["OLDPHOTO_BENCH_SRC"] = source
    else:
        os.environ.pop("OLDPHOTO_BENCH_SRC", None)
    env = {"OLDPHOTO_MODEL": str(tiny_checkpoint()), "OLDPHOTO_DEVICE": "cpu", "OLDPHOTO_WORKERS": "1", "OLDPHOTO_MODELS_DIR": str(MODELS_DIR)}
    with start_server(scratch_dir("preview-cost"), env) as server:
        token = server.token("preview-cost")
        ids, started = [], time.monotonic()
        for seed in range(jobs):
            job = submit(server, token, png_bytes(*size, seed=seed), workflow=SMALL_TILES)
            status = wait_status(server, token, job["job_id"], {"succeeded", "failed", "cancelled"}, timeout=600)
            if status["status"] != "succeeded":
                raise RuntimeError(f"{name}: a job ended {status['status']}: {status}")
            ids.append(job["job_id"])
        seconds = (time.monotonic() - started) / jobs
        lag_max = server.metric("oldphoto_loop_lag_max_seconds")
        cpu = server.cpu_seconds()
        with sqlite3.connect(f"file:{server.data_dir / 'jobs.sqlite3'}?mode=ro", uri=True) as db:
            rows = [db.execute("SELECT body FROM events WHERE job_id = ?", (job_id,)).fetchall() for job_id in ids]
    previews = [sum(1 for (body,) in job if '"type":"preview"' in body) for job in rows]
    return {
        "design": name,
        "job_s": seconds,
        "previews": sum(previews) / jobs,
        "log_bytes": sum(len(body.encode()) for job in rows for (body,) in job) / jobs,
        "lag_max_ms": lag_max * 1000,
        "web_cpu_s": cpu,
    }


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3, help="upscale jobs per design")
    parser.add_argument("--before", help="another copy of src/ to run as the design to compare against")
    parser.add_argument("--quick", action="store_true", help="the smoke test: one small job, few rounds")
    args = parser.parse_args(argv)
    size, rounds, count = ((96, 64), 2, 20) if args.quick else ((384, 288), 10, 200)
    if args.quick:
        args.jobs = 1
    print_header("Live previews: what they cost")
    worker = worker_side(rounds)
    recorder = recorder_side(count)
    out = table(
        ["worker: canvas start ms (2000x1500 in)", "paste per tile ms (512x512)", "send ms (shrink + JPEG)", "JPEG bytes"],
        [[worker["start_ms"], worker["paste_ms"], worker["send_ms"], worker["jpeg_bytes"]]],
    )
    out += "\n\n" + table(["recorder (SQLite): progress note ms", "preview ms (picture kept + event)"], [[recorder["note_ms"], recorder["preview_ms"]]])
    designs = [("this", None)] + ([("before", args.before)] if args.before else [])
    results = [server_side(name, source, args.jobs, size) for name, source in designs]
    headers = ["design", "s per job", "previews per job", "log bytes per job", "loop lag max ms", "web process CPU s (all)"]
    out += "\n\n" + table(headers, [[r["design"], r["job_s"], r["previews"], r["log_bytes"], r["lag_max_ms"], r["web_cpu_s"]] for r in results])
    out += f"\n{args.jobs} upscale jobs of {size[0]}x{size[1]} in 32-pixel tiles per design; load {load_avg()}"
    print()
    print(out)
    return out


if __name__ == "__main__":
    main()
