"""Log bytes per job: what one colorize job leaves in the durable event log, this design against another.

Each design runs as a real `oldphoto serve` (embedded, SQLite, one worker) with the DDColor tiny architecture and
seeded random weights (same compute as the real checkpoint). One warm-up job prepares the runtime (its events are
counted apart: the first use of a model also reports preparing it); then `--jobs` colorize jobs of a real photo run
one after another. Read from the store afterwards, per job: events, `sum(length(body))` of their bodies, and the
events by message key. `--before DIR` runs a second design from another copy of `src/` (for example
`git archive <commit> src | tar -x -C DIR`) in the same run, and the ratio is printed.

Run: .venv/bin/python benchmarks/log_bytes.py [--jobs 5] [--before DIR] [--input-size 512] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    MODELS_DIR,
    load_avg,
    photo_bytes,
    print_header,
    scratch_dir,
    start_server,
    submit,
    table,
    tiny_checkpoint,
    wait_status,
)


def run_design(name: str, source: str | None, photo: bytes, jobs: int, input_size: int) -> dict[str, Any]:
    if source:
        os.environ["OLDPHOTO_BENCH_SRC"] = source
    else:
        os.environ.pop("OLDPHOTO_BENCH_SRC", None)
    env = {
        "OLDPHOTO_MODEL": str(tiny_checkpoint()),
        "OLDPHOTO_DEVICE": "cpu",
        "OLDPHOTO_WORKERS": "1",
        "OLDPHOTO_INPUT_SIZE": str(input_size),
        "OLDPHOTO_MODELS_DIR": str(MODELS_DIR),
    }
    with start_server(scratch_dir("logbytes"), env) as server:
        token = server.token("log-bytes")
        ids = []
        for _ in range(jobs + 1):
            job = submit(server, token, photo, steps="colorize")
            status = wait_status(server, token, job["job_id"], {"succeeded", "failed", "cancelled"}, timeout=600)
            if status["status"] != "succeeded":
                raise RuntimeError(f"{name}: a job ended {status['status']}: {status}")
            ids.append(job["job_id"])
        with sqlite3.connect(f"file:{server.data_dir / 'jobs.sqlite3'}?mode=ro", uri=True) as db:
            rows = {job_id: db.execute("SELECT body FROM events WHERE job_id = ? ORDER BY seq", (job_id,)).fetchall() for job_id in ids}
    warm, measured = ids[0], ids[1:]
    keys: Counter[str] = Counter()
    for job_id in measured:
        for (body,) in rows[job_id]:
            keys[_message_key(body)] += 1
    return {
        "design": name,
        "jobs": len(measured),
        "events": sum(len(rows[j]) for j in measured) / len(measured),
        "bytes": sum(len(b.encode()) for j in measured for (b,) in rows[j]) / len(measured),
        "first_events": len(rows[warm]),
        "first_bytes": sum(len(b.encode()) for (b,) in rows[warm]),
        "keys": {k: v / len(measured) for k, v in keys.most_common()},
    }


def _message_key(body: str) -> str:
    import json

    return str(json.loads(body).get("message_key"))


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5, help="measured colorize jobs per design (after one warm-up)")
    parser.add_argument("--before", help="another copy of src/ to run as the design to compare against")
    parser.add_argument("--input-size", type=int, default=512, help="the model's input size (OLDPHOTO_INPUT_SIZE)")
    parser.add_argument("--photo", default="detroit-circa-1915.jpg", help="a file in ../shared/photos")
    parser.add_argument("--quick", action="store_true", help="the smoke test: one job at input size 128")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.input_size = 1, 128
    print_header("Log bytes per colorize job")
    photo, photo_name = photo_bytes(args.photo)
    print(f"photo: {photo_name}; input size {args.input_size}; {args.jobs} jobs per design after a warm-up", flush=True)
    designs = [("this", None)] + ([("before", args.before)] if args.before else [])
    results = [run_design(name, source, photo, args.jobs, args.input_size) for name, source in designs]
    headers = ["design", "jobs", "events per job", "event body bytes per job", "first job (prepares the runtime): events / bytes"]
    rows = [[r["design"], r["jobs"], r["events"], r["bytes"], f"{r['first_events']} / {r['first_bytes']}"] for r in results]
    out = table(headers, rows)
    for r in results:
        out += f"\n{r['design']}: events per job by message key: " + ", ".join(f"{k} {v:g}" for k, v in r["keys"].items())
    if len(results) == 2:
        out += f"\nbefore / this: bytes per job {results[1]['bytes'] / results[0]['bytes']:.2f}x; load {load_avg()}"
    print()
    print(out)
    return out


if __name__ == "__main__":
    main()
