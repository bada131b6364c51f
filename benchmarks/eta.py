"""ETA error over a run of mixed jobs: the learned ETA (`eta_s`, issue 13) against the straight-line estimate of before.

A real `oldphoto serve` (embedded, SQLite, one worker, CPU) with the DDColor tiny architecture and seeded random
weights runs `--jobs` jobs one after another, cycling through mixed steps and photo sizes; the store starts empty,
so the first jobs run on the seed table and the later ones on what the earlier ones taught. Read from the store
afterwards, per job: its running span (its first engine event to `complete`) and, at 25 %, 50 % and 75 % of that
span, the last progress event said by then. There the error is |eta - actual| / actual, with actual the seconds from
that event to `complete`. *learned* is the event's own `eta_s`; *straight line* is the estimate the reporter made
before, worked out from the same event: elapsed x (99 - progress) / (progress - 1), none under 5 points done (a
missing estimate counts as an error of 1, what a bar with no time left says).

Run: .venv/bin/python benchmarks/eta.py [--jobs 30] [--input-size 512] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    MODELS_DIR,
    load_avg,
    median,
    percentile,
    png_bytes,
    print_header,
    scratch_dir,
    start_server,
    submit,
    table,
    tiny_checkpoint,
    wait_status,
)

STEPS = ("colorize", "denoise,colorize", "colorize,sharpen", "sharpen", "denoise", "denoise,colorize,sharpen")
SIZES = ((640, 480), (320, 240), (1024, 768))
POINTS = (0.25, 0.5, 0.75)
SPAN = (1, 99)  # the reporter's span of a job's progress
READ_FLOOR_S = 1.0


@dataclass(frozen=True)
class Said:
    ts: float
    progress: int
    eta_s: float | None


def straight_line(said: Said, start: float) -> float | None:
    done = said.progress - SPAN[0]
    if done < 5:
        return None
    return (said.ts - start) * (SPAN[1] - said.progress) / done


def errors(events: list[dict]) -> dict[str, list[float]]:
    """Per estimator and point of the job: |eta - actual| / actual (`said` keys: what the learned ETA said, in s)."""
    start = next(e["ts"] for e in events if e.get("stage") not in ("upload", "queued"))
    end = next(e["ts"] for e in events if e.get("type") == "complete")
    said = [Said(e["ts"], e.get("progress", 0), e.get("eta_s")) for e in events if e.get("type", "progress") == "progress"]
    out: dict[str, list[float]] = {}
    for q in POINTS:
        moment = start + q * (end - start)
        last = [s for s in said if s.ts <= moment][-1]
        actual = end - last.ts
        for name, eta in (("learned", last.eta_s), ("straight line", straight_line(last, start))):
            out.setdefault(f"{name} {q:.0%}", []).append(1.0 if eta is None else abs(eta - actual) / actual)
            # As a person reads it: the page shows whole seconds, and none under 1 s (`eta_s` itself is in tenths), so
            # a few hundredths left of a 50 ms job make no error of 200 % there.
            read = 1.0 if eta is None else abs(eta - actual) / max(actual, READ_FLOOR_S)
            out.setdefault(f"{name} read {q:.0%}", []).append(read)
        out.setdefault("said", []).append(-1.0 if last.eta_s is None else last.eta_s)
        out.setdefault("actual", []).append(actual)
    return out


@dataclass(frozen=True)
class JobRun:
    index: int
    steps: str
    size: tuple[int, int]
    first: bool  # the first job of its steps and photo size: its stages run on the seed table (or cold)
    seconds: float
    errors: dict[str, list[float]]


def breakdown(runs: list[JobRun]) -> str:
    """Where the learned ETA's large errors come from: first jobs of a kind against repeats, and the worst jobs."""
    rows = []
    for label, chosen in (("first of its kind", [r for r in runs if r.first]), ("seen before", [r for r in runs if not r.first])):
        for q in POINTS:
            values = [e for r in chosen for e in r.errors[f"learned {q:.0%}"]]
            if values:
                rows.append([label, f"{q:.0%}", len(values), median(values), percentile(values, 90)])
    out = table(["jobs", "point", "n", "learned median", "learned p90"], rows)
    worst = sorted(runs, key=lambda r: -max(r.errors[f"learned {q:.0%}"][0] for q in POINTS))[:6]
    lines = ["", "worst jobs (learned ETA said / actual seconds left, at 25 / 50 / 75 %):"]
    for r in worst:
        pairs = " ".join(f"{said:.1f}/{actual:.1f}" for said, actual in zip(r.errors["said"], r.errors["actual"], strict=True))
        lines.append(f"  job {r.index:2d} {r.steps:26s} {r.size[0]}x{r.size[1]:<4d} {'first' if r.first else 'again'} {r.seconds:5.2f} s: {pairs}")
    return out + "\n".join(lines)


def run(jobs: int, input_size: int, sizes: tuple[tuple[int, int], ...]) -> tuple[dict[str, list[float]], list[float], list[JobRun]]:
    env = {
        "OLDPHOTO_MODEL": str(tiny_checkpoint()),
        "OLDPHOTO_DEVICE": "cpu",
        "OLDPHOTO_WORKERS": "1",
        "OLDPHOTO_INPUT_SIZE": str(input_size),
        "OLDPHOTO_MODELS_DIR": str(MODELS_DIR),
        "OLDPHOTO_USER_CONCURRENCY": str(jobs + 1),
    }
    with start_server(scratch_dir("eta"), env) as server:
        token = server.token("eta")
        ids = []
        for i in range(jobs):
            width, height = sizes[i % len(sizes)]
            job = submit(server, token, png_bytes(width, height, seed=i), steps=STEPS[i % len(STEPS)])
            status = wait_status(server, token, job["job_id"], {"succeeded", "failed", "cancelled"}, timeout=600)
            if status["status"] != "succeeded":
                raise RuntimeError(f"a job ended {status['status']}: {status}")
            ids.append(job["job_id"])
        with sqlite3.connect(f"file:{server.data_dir / 'jobs.sqlite3'}?mode=ro", uri=True) as db:
            logs = {j: [json.loads(b) for (b,) in db.execute("SELECT body FROM events WHERE job_id = ? ORDER BY seq", (j,))] for j in ids}
    merged: dict[str, list[float]] = {}
    spans, runs, seen = [], [], set()
    for i, job_id in enumerate(ids):
        found = errors(logs[job_id])
        for key, values in found.items():
            if key not in ("said", "actual"):
                merged.setdefault(key, []).extend(values)
        events = logs[job_id]
        spans.append(next(e["ts"] for e in events if e.get("type") == "complete") - next(e["ts"] for e in events if e.get("stage") not in ("upload", "queued")))
        kind = (STEPS[i % len(STEPS)], sizes[i % len(sizes)])
        runs.append(JobRun(i, kind[0], kind[1], kind not in seen, spans[-1], found))
        seen.add(kind)
    return merged, spans, runs


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--input-size", type=int, default=512, help="the model's input size (OLDPHOTO_INPUT_SIZE)")
    parser.add_argument("--quick", action="store_true", help="the smoke test: 6 small jobs at input size 128")
    args = parser.parse_args(argv)
    sizes = SIZES
    if args.quick:
        args.jobs, args.input_size, sizes = 6, 128, ((160, 120), (96, 64))
    print_header("ETA error: learned against straight line")
    print(f"{args.jobs} jobs, one at a time, steps cycling {', '.join(STEPS)}; photos {', '.join(f'{w}x{h}' for w, h in sizes)}", flush=True)
    found, spans, runs = run(args.jobs, args.input_size, sizes)
    rows = []
    for q in POINTS:
        learned, straight = found[f"learned {q:.0%}"], found[f"straight line {q:.0%}"]
        rows.append([f"{q:.0%}", median(learned), percentile(learned, 90), median(straight), percentile(straight, 90)])
    headers = ["point of the job", "learned median", "learned p90", "straight line median", "straight line p90"]
    out = table(headers, rows)
    rows = []
    for q in POINTS:
        learned, straight = found[f"learned read {q:.0%}"], found[f"straight line read {q:.0%}"]
        rows.append([f"{q:.0%}", median(learned), percentile(learned, 90), median(straight), percentile(straight, 90)])
    out += f"\n\nAs a person reads it (seconds left under {READ_FLOOR_S:g} s counted as {READ_FLOOR_S:g} s):\n" + table(headers, rows)
    out += f"\njobs {len(spans)}, running seconds median {median(spans):.2f}, max {max(spans):.2f}; load {load_avg()}"
    out += "\n\n" + breakdown(runs)
    print()
    print(out)
    return out


if __name__ == "__main__":
    main()
