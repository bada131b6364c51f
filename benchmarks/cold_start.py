"""Cold start: what a person waits for, as whole processes started from the shell (issue 12, item 4).

1. `oldphoto restore` of one photo, and of four photos in one process, against the authors' inference script
   (benchmarks/authors_inference.py: piddnad/DDColor's `infer.py` with its `ColorizationPipeline`; the steps of
   tests/models/reference.py) on the same photos and weights: wall time, peak resident memory (RSS) and CPU time of
   each process. The runs alternate (oldphoto, authors, then the other order the next round...) so a shared machine
   loads both alike; each side is run once first, untimed: `oldphoto restore` exports its ONNX segments then, and
   the timed runs find them cached, as the issue measures.
2. A worker process (`WorkerPool`, spawned as the service spawns them, with the options `oldphoto serve` gives its
   jobs): from spawn to `Ready` and to the first job's `inference` stage. The first job is sent at the target's time
   after spawn (1 s tiny, 3 s large): a worker that got its model ready by then (it starts on it at `Ready`) runs it
   as fast as a second job on the same, warm, worker.
3. The web process: `oldphoto serve` from start to /healthz answering and to a worker ready; its own RSS (VmRSS of the
   web process only, not its workers) a few seconds after /healthz answers, and which model runtimes it has loaded
   (mapped libraries); the wall time of `python -c 'import oldphoto.commands.serve'`, and `-X importtime` of the
   three (restore, the authors' script, the web process's imports) by top-level package.

Each process is started through a small launcher (python -I -S, about 10 MB) that times it and reads its own
rusage with wait4: a child forked from this benchmark (which has torch loaded) would count the benchmark's
memory as its own peak until it execs. Peak RSS is that of the largest process in the child's tree.

Checkpoints: the real DDColor architectures with seeded random weights (same compute as the official ones): tiny
by default, `--model large` for ConvNeXt-L (about 900 MB, made once). Photos: ../shared/photos (one of ~1000 px and
four), generated images when it is absent.

Run: .venv/bin/python benchmarks/cold_start.py [--model tiny|large] [--repeats 3] [--input-size 512] [--quick]
`--quick` (the smoke test): one repeat, small generated images, model input 64, no untimed run of the authors' script
first, -X importtime of the web process's imports only. `--keep` keeps the outputs and each process's log.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from benchmarks._common import (  # noqa: E402
    HOST,
    MODELS_DIR,
    PHOTOS,
    free_port,
    load_avg,
    median,
    png_bytes,
    print_header,
    table,
    tiny_checkpoint,
)

MB = 2**20
AUTHORS_SCRIPT = Path(__file__).resolve().parent / "authors_inference.py"
RESULTS = Path(__file__).resolve().parent / "results" / "cold_start.json"
ONE_PHOTO = "detroit-circa-1915.jpg"  # 1000x553
FOUR_PHOTOS = ["detroit-circa-1915.jpg", "broadway-saratoga-springs-ca1905.jpg", "buffalo-bank-1908.jpg", "new-york-riverfront-1931.jpg"]
# Issue 12's targets on this machine.
TARGET_WALL_RATIO = 0.5  # one photo through `oldphoto restore` in at most half the authors' wall time
TARGET_RSS_RATIO = 1.0  # and no more peak RSS
TARGET_WORKER_S = {"tiny": 1.0, "large": 3.0}  # a spawned worker ready (model loaded), segments cached
# Ready by then: a first job sent at that time after spawn takes at most this much longer than a warm worker's job.
WARM_SLACK = 1.15
TARGET_WEB_RSS_MB = 100.0
MODEL_RUNTIMES = {"torch": "libtorch_cpu", "onnxruntime": "onnxruntime", "ncnn": "ncnn", "cv2": "cv2"}

# Starts one command, waits for it with wait4 and prints its wall time and rusage as JSON. Run with -I -S: it is
# small, so the command's peak RSS is its own (a fork of a large process counts the parent's pages until exec).
_LAUNCHER = r"""
import json, os, sys, time
log = sys.argv[1]
argv = sys.argv[2:]
actions = [(os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), (os.POSIX_SPAWN_DUP2, 1, 2)]
started = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
print(json.dumps({"wall_s": wall, "maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "exit": os.waitstatus_to_exitcode(status)}))
"""

# One worker through the real WorkerPool API, with the options `oldphoto serve` gives its jobs (OLDPHOTO_* from the
# environment), timed from the spawn. Run as `python -c`, so the spawned worker re-imports no main script.
_WORKER_DRIVER = r"""
import json, queue, sys, time
from oldphoto.jobs.messages import Done, Measured, Noted, Previewed, Ready
from oldphoto.jobs.work import WorkItem
from oldphoto.jobs.workers import WorkerPool
from oldphoto.settings import Settings
from oldphoto.wiring import run_options

photo, folder, send_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
settings = Settings()
options = run_options(settings)
workflow = json.dumps({"steps": "colorize"})
messages = queue.Queue()
# As the server starts its workers: each warms up on the server's model right after `Ready` (Node.warm).
pool = WorkerPool(1, lambda message: messages.put((time.perf_counter(), message)), job_timeout_s=900, warm=options)


def job(job_id):
    place = None
    while place is None:
        place = pool.idle()
        if place is None:
            time.sleep(0.005)
    started = time.perf_counter()
    pool.assign(place, WorkItem(job_id, photo, f"{folder}/{job_id}.png", workflow, options, settings.max_pixels))
    inference = None
    while True:
        at, message = messages.get(timeout=900)
        if isinstance(message, Previewed | Measured):
            continue
        if isinstance(message, Noted):
            if inference is None and message.note.stage == "inference":
                inference = at
            continue
        if not isinstance(message, Done):
            raise SystemExit(f"job {job_id}: {message!r}")
        return started, inference, at


spawned = time.perf_counter()
pool.start()
try:
    while True:
        at, message = messages.get(timeout=300)
        if isinstance(message, Ready):
            ready = at
            break
    # The first job is sent at the target's time after spawn: a worker ready by then runs it as fast as a warm one.
    time.sleep(max(0.0, spawned + send_at - time.perf_counter()))
    first_started, first_inference, first_done = job("first")
    second_started, _, second_done = job("second")
finally:
    pool.stop(timeout=10)
print(json.dumps({
    "ready_s": ready - spawned,
    "loaded_s": None if first_inference is None else first_inference - spawned,
    "first_done_s": first_done - spawned,
    "first_sent_s": first_started - spawned,
    "first_job_s": first_done - first_started,
    "warm_job_s": second_done - second_started,
}))
"""


# -- processes --------------------------------------------------------------------------------------------------


def child_env(models_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLDPHOTO_")}  # nothing of the caller's settings
    env.update(
        {
            "OLDPHOTO_MODELS_DIR": str(models_dir),
            "PYTHONUNBUFFERED": "1",
            # OLDPHOTO_BENCH_SRC: run another copy of src/ (to measure a proposed change in a scratch copy).
            "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("OLDPHOTO_BENCH_SRC") or str(REPO / "src"), os.environ.get("PYTHONPATH")])),
            **(extra or {}),
        }
    )
    return env


def oldphoto_command() -> list[str]:
    """`oldphoto` as a person runs it: the console script beside this Python, else `python -m oldphoto`."""
    script = Path(sys.executable).parent / "oldphoto"
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else [sys.executable, "-m", "oldphoto"]


def python_args(argv: list[str]) -> list[str]:
    """The arguments that make this Python run `argv` (a command that is this Python, or a Python script)."""
    return argv[1:] if argv[0] == sys.executable else argv


def measure(argv: list[str], env: dict[str, str], log: Path, timeout: float) -> dict[str, Any]:
    """One whole process: wall seconds, peak RSS (bytes), CPU seconds. Raises if it fails or runs past `timeout`."""
    executable = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
    launcher = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(log), executable, *argv[1:]],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a timeout ends the launcher and the command together
    )
    try:
        out, _ = launcher.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
        raise RuntimeError(f"{' '.join(argv)} ran past {timeout:.0f} s; its output:\n{_tail(log)}") from None
    if launcher.returncode != 0:
        raise RuntimeError(f"the launcher failed ({launcher.returncode}) for {' '.join(argv)}")
    result = json.loads(out)
    if result["exit"] != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {result['exit']}; its output:\n{_tail(log)}")
    return {"wall_s": result["wall_s"], "rss": result["maxrss_kb"] * 1024, "cpu_s": result["cpu_s"]}


def _tail(log: Path, chars: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no output)"


# -- photos and checkpoints -------------------------------------------------------------------------------------


def prepare_photos(work: Path, quick: bool) -> tuple[Path, Path, str]:
    """A folder holding the one photo, a folder holding four, and what they are."""
    one, four = work / "one", work / "four"
    one.mkdir()
    four.mkdir()
    if not quick and all((PHOTOS / name).is_file() for name in FOUR_PHOTOS):
        shutil.copy(PHOTOS / ONE_PHOTO, one / ONE_PHOTO)
        for name in FOUR_PHOTOS:
            shutil.copy(PHOTOS / name, four / name)
        return one, four, f"one: {ONE_PHOTO} (1000x553); four: {', '.join(FOUR_PHOTOS)} (../shared/photos)"
    width, height = (160, 120) if quick else (1000, 553)
    (one / "generated-0.png").write_bytes(png_bytes(width, height, 0))
    for seed in range(4):
        (four / f"generated-{seed}.png").write_bytes(png_bytes(width, height, seed))
    why = "--quick" if quick else "the shared photos are absent"
    return one, four, f"generated {width}x{height} grey PNGs ({why})"


def checkpoint_for(model: str) -> Path:
    if model == "tiny":
        return tiny_checkpoint()
    from benchmarks.worker_memory import large_checkpoint

    print("the large checkpoint (ConvNeXt-L, random weights, about 900 MB) is made once, under the temp dir ...", flush=True)
    return large_checkpoint()


# -- 1. restore against the authors' script ---------------------------------------------------------------------


def restore_cases(one: Path, four: Path, out: Path, checkpoint: Path, model: str, size: int) -> dict[str, list[str]]:
    oldphoto = [*oldphoto_command(), "restore", "--model", str(checkpoint), "--input-size", str(size)]
    authors = [sys.executable, str(AUTHORS_SCRIPT), "--model_path", str(checkpoint), "--input_size", str(size), "--model_size", model]
    photo = next(one.iterdir())
    return {
        "oldphoto one": [*oldphoto, str(photo), "-o", str(out / "oldphoto-one.png")],
        "authors one": [*authors, "--input", str(one), "--output", str(out / "authors-one")],
        "oldphoto four": [*oldphoto, str(four), "-o", str(out / "oldphoto-four")],
        "authors four": [*authors, "--input", str(four), "--output", str(out / "authors-four")],
    }


def run_restores(
    cases: dict[str, list[str]], env: dict[str, str], logs: Path, repeats: int, timeout: float, quick: bool
) -> dict[str, list[dict[str, Any]]]:
    # Untimed: the ONNX export when the segments are not cached yet, and a warm page cache for both sides.
    for name in ("oldphoto one",) if quick else ("oldphoto one", "authors one"):
        result = measure(cases[name], env, logs / f"warm-up {name}.log", timeout * 10)
        print(f"warm-up {name}: {result['wall_s']:.2f} s, peak {result['rss'] / MB:.0f} MB (load {load_avg()})", flush=True)
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    pairs = [("oldphoto one", "authors one"), ("oldphoto four", "authors four")]
    for round_ in range(repeats):
        for pair in pairs:
            for name in pair if round_ % 2 == 0 else reversed(pair):  # the order turns every round
                result = measure(cases[name], env, logs / f"{name} {round_ + 1}.log", timeout)
                runs[name].append(result)
                print(f"round {round_ + 1} {name}: {result['wall_s']:.2f} s, CPU {result['cpu_s']:.2f} s, "
                      f"peak {result['rss'] / MB:.0f} MB (load {load_avg()})", flush=True)
    return runs


# -- 2. a worker from spawn to ready ----------------------------------------------------------------------------


def run_workers(photo: Path, work: Path, env: dict[str, str], repeats: int, timeout: float, send_at: float) -> list[dict[str, Any]]:
    runs = []
    for number in range(1, repeats + 1):
        folder = work / f"worker-{number}"
        folder.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", _WORKER_DRIVER, str(photo), str(folder), str(send_at)], env=env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"the worker driver failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        runs.append(result)
        loaded = "-" if result["loaded_s"] is None else f"{result['loaded_s']:.2f} s"
        print(f"worker {number}: Ready {result['ready_s']:.2f} s, model loaded {loaded}, first job sent at {result['first_sent_s']:.2f} s "
              f"took {result['first_job_s']:.2f} s, warm job {result['warm_job_s']:.2f} s (load {load_avg()})", flush=True)
    return runs


# -- 3. the web process -----------------------------------------------------------------------------------------


def rss_of(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM (its peak) of one process, bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def runtimes_mapped(pid: int) -> list[str]:
    """The model runtimes whose libraries the process has mapped (its /proc/<pid>/maps)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name, marker in MODEL_RUNTIMES.items() if marker in maps]


def run_serve(checkpoint: Path, work: Path, env: dict[str, str], settle_s: float, timeout: float, number: int) -> dict[str, Any]:
    data_dir = work / f"serve-{number}"
    data_dir.mkdir()
    port = free_port()
    log = open(data_dir / "serve.log", "wb")  # noqa: SIM115 - closed below
    argv = [*oldphoto_command(), "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir),
            "--model", str(checkpoint), "--workers", "1", "--log-level", "warning"]
    server_env = {**env, "OLDPHOTO_JWT_SECRET": secrets.token_urlsafe(32)}
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    answered = worker_ready = None
    try:
        with httpx.Client(timeout=1) as client:
            deadline = started + timeout
            while worker_ready is None and time.perf_counter() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"oldphoto serve exited with {process.returncode}:\n{_tail(data_dir / 'serve.log')}")
                try:
                    health = client.get(f"http://{HOST}:{port}/healthz")
                except httpx.HTTPError:
                    time.sleep(0.01)
                    continue
                now = time.perf_counter()
                if health.status_code == 200:
                    answered = answered or now
                    if health.json().get("workers_ready", 0) >= 1:
                        worker_ready = now
                time.sleep(0.01)
        if answered is None:
            raise RuntimeError(f"oldphoto serve did not answer /healthz within {timeout:.0f} s:\n{_tail(data_dir / 'serve.log')}")
        time.sleep(max(0.0, answered + settle_s - time.perf_counter()))
        rss, hwm = rss_of(process.pid)
        mapped = runtimes_mapped(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
    return {
        "healthz_s": answered - started,
        "worker_ready_s": None if worker_ready is None else worker_ready - started,
        "rss": rss,
        "hwm": hwm,
        "runtimes": mapped,
    }


def import_wall(module: str, env: dict[str, str], logs: Path, timeout: float) -> dict[str, Any]:
    return measure([sys.executable, "-c", f"import {module}"], env, logs / f"import {module}.log", timeout)


# -- where the time goes ----------------------------------------------------------------------------------------


def stage_marks(argv: list[str], env: dict[str, str], timeout: float) -> list[tuple[str, float]]:
    """One `oldphoto restore --json` run: the wall clock at its start, at the first event of each stage, at its exit."""
    started = time.time()
    done = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, timeout=timeout)
    ended = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} --json failed ({done.returncode}):\n{done.stderr[-3000:]}")
    marks, seen = [("process start", started)], set()
    for line in done.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or "ts" not in event:
            continue
        stage = event.get("stage")
        if stage not in seen:
            seen.add(stage)
            marks.append((str(stage), float(event["ts"])))
    marks.append(("process exit", ended))
    return marks


def stages_table(marks: list[tuple[str, float]]) -> str:
    rows = [[f"{a} -> {b}", tb - ta] for (a, ta), (b, tb) in zip(marks, marks[1:])]
    rows.append(["whole process", marks[-1][1] - marks[0][1]])
    return table(["one `oldphoto restore --json` run, first event of each stage", "s"], rows)


# -- -X importtime ----------------------------------------------------------------------------------------------


def importtime(argv: list[str], env: dict[str, str], timeout: float) -> dict[str, float]:
    """Seconds of import by top-level package (each module's own time, `self`), from one run under -X importtime."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed under -X importtime:\n{done.stderr[-3000:]}")
    by_package: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            self_us, _, name = (part.strip() for part in line[len("import time:") :].split("|", 2))
            by_package[name.split(".")[0]] += int(self_us) / 1e6
        except ValueError:
            continue
    by_package["all imports"] = sum(by_package.values())
    return dict(by_package)


# -- the report -------------------------------------------------------------------------------------------------


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "-"
    scaled = [v / scale for v in values]
    if len(scaled) == 1:
        return f"{scaled[0]:.{digits}f}"
    return f"{median(scaled):.{digits}f} ({min(scaled):.{digits}f}-{max(scaled):.{digits}f})"


def ratio(ours: list[float], theirs: list[float]) -> float | None:
    return median(ours) / median(theirs) if ours and theirs and median(theirs) > 0 else None


def verdict(value: float | None, limit: float, strict: bool = False) -> str:
    if value is None:
        return "-"
    return "yes" if (value < limit if strict else value <= limit) else "no"


def summary(restores: dict[str, list[dict[str, Any]]], workers: list[dict[str, Any]], serves: list[dict[str, Any]],
            imports: list[dict[str, Any]], model: str, settle_s: float) -> str:
    def col(name: str, key: str) -> list[float]:
        return [r[key] for r in restores[name]]

    rows: list[list[Any]] = []
    for photos in ("one", "four"):
        label = "one photo" if photos == "one" else "four photos, one process"
        ours, theirs = f"oldphoto {photos}", f"authors {photos}"
        wall = ratio(col(ours, "wall_s"), col(theirs, "wall_s"))
        rss = ratio(col(ours, "rss"), col(theirs, "rss"))
        cpu = ratio(col(ours, "cpu_s"), col(theirs, "cpu_s"))
        one = photos == "one"
        rows += [
            [f"restore {label}: wall s", spread(col(ours, "wall_s")), spread(col(theirs, "wall_s")), wall,
             f"<= {TARGET_WALL_RATIO}x" if one else "-", verdict(wall, TARGET_WALL_RATIO) if one else "-"],
            [f"restore {label}: peak RSS MB", spread(col(ours, "rss"), MB, 0), spread(col(theirs, "rss"), MB, 0), rss,
             f"<= {TARGET_RSS_RATIO}x" if one else "-", verdict(rss, TARGET_RSS_RATIO) if one else "-"],
            [f"restore {label}: CPU s", spread(col(ours, "cpu_s")), spread(col(theirs, "cpu_s")), cpu, "-", "-"],
        ]
    loaded = [w["loaded_s"] for w in workers if w["loaded_s"] is not None]
    first_jobs = [w["first_job_s"] for w in workers]
    warm_jobs = [w["warm_job_s"] for w in workers]
    target = TARGET_WORKER_S[model]
    rows += [
        ["worker: spawn -> Ready s", spread([w["ready_s"] for w in workers]), "-", None, "-", "-"],
        ["worker: spawn -> first job's inference begins s", spread(loaded), "-", None, "-", "-"],
        [f"worker: a first job sent {target:g} s after spawn, s", spread(first_jobs), "-", None,
         f"<= {WARM_SLACK}x a warm job ({model})", verdict(median(first_jobs) / median(warm_jobs), WARM_SLACK)],
        ["worker: a second job, warm s", spread(warm_jobs), "-", None, "-", "-"],
    ]
    ready = [s["worker_ready_s"] for s in serves if s["worker_ready_s"] is not None]
    web_rss = [s["rss"] for s in serves]
    mapped = sorted({name for s in serves for name in s["runtimes"]})
    rows += [
        ["web: `oldphoto serve` -> /healthz answers s", spread([s["healthz_s"] for s in serves]), "-", None, "-", "-"],
        ["web: `oldphoto serve` -> a worker ready s", spread(ready), "-", None, "-", "-"],
        [f"web: RSS MB {settle_s:g} s after /healthz (web process only)", spread(web_rss, MB, 0), "-", None,
         f"< {TARGET_WEB_RSS_MB:g} MB", verdict(median(web_rss) / MB, TARGET_WEB_RSS_MB, strict=True)],
        ["web: model runtimes loaded in the web process", ", ".join(mapped) or "none", "-", None, "none", "yes" if not mapped else "no"],
        ["web: `python -c 'import oldphoto.commands.serve'` wall s", spread([i["wall_s"] for i in imports]), "-", None, "-", "-"],
    ]
    return table(["measure", "oldphoto", "authors", "oldphoto / authors", "target", "met"], rows)


def import_table(columns: dict[str, dict[str, float]], top: int = 10) -> str:
    packages = sorted({p for c in columns.values() for p in c if p != "all imports"}, key=lambda p: -max(c.get(p, 0.0) for c in columns.values()))
    rows = [[p, *(columns[c].get(p) for c in columns)] for p in ["all imports", *packages[:top]]]
    return table(["package (own import time, s)", *columns], rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "large"], default="tiny", help="the DDColor architecture (seeded random weights)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, interleaved")
    parser.add_argument("--input-size", type=int, default=512, help="the model's input size, both sides")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after /healthz answers to read the web process's RSS")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where `oldphoto` caches its exported segments")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one timed process may take")
    parser.add_argument("--quick", action="store_true", help="for the smoke test: one repeat, small generated images, input 64")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (outputs and each process's log)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.input_size, args.settle = 1, 64, 1.0
    info = print_header(f"Cold start: `oldphoto restore`, a worker and the web process, as whole processes (DDColor {args.model})")
    checkpoint = checkpoint_for(args.model)
    work = Path(tempfile.mkdtemp(prefix="oldphoto-bench-cold-"))
    logs = work / "logs"
    logs.mkdir()
    try:
        one, four, described = prepare_photos(work, args.quick)
        print(f"photos: {described}; model input {args.input_size}; checkpoint {checkpoint}; models dir {args.models_dir}; "
              f"repeats {args.repeats}; oldphoto: {' '.join(oldphoto_command())}", flush=True)
        env = child_env(args.models_dir, {"OLDPHOTO_MODEL": str(checkpoint), "OLDPHOTO_INPUT_SIZE": str(args.input_size)})
        print("\n## restore against the authors' script", flush=True)
        cases = restore_cases(one, four, work, checkpoint, args.model, args.input_size)
        restores = run_restores(cases, env, logs, args.repeats, args.timeout, args.quick)
        print("\n## a worker from spawn", flush=True)
        workers = run_workers(next(one.iterdir()), work, env, args.repeats, args.timeout, TARGET_WORKER_S[args.model])
        print("\n## the web process", flush=True)
        serves, imports = [], []
        for number in range(1, args.repeats + 1):
            serves.append(run_serve(checkpoint, work, env, args.settle, args.timeout, number))
            imports.append(import_wall("oldphoto.commands.serve", env, logs, args.timeout))
            s = serves[-1]
            print(f"serve {number}: /healthz {s['healthz_s']:.2f} s, worker ready {s['worker_ready_s'] or float('nan'):.2f} s, "
                  f"RSS {s['rss'] / MB:.0f} MB (peak {s['hwm'] / MB:.0f} MB), runtimes loaded: {', '.join(s['runtimes']) or 'none'}; "
                  f"import oldphoto.commands.serve {imports[-1]['wall_s']:.2f} s (load {load_avg()})", flush=True)
        print("\n## where the time goes: stages of one `oldphoto restore --json`, and -X importtime (one run each)", flush=True)
        marks = stage_marks(cases["oldphoto one"], env, args.timeout)
        import_columns = {}
        if not args.quick:
            import_columns["restore one photo"] = importtime(python_args(cases["oldphoto one"]), env, args.timeout)
            import_columns["authors' script, one photo"] = importtime(python_args(cases["authors one"]), env, args.timeout)
        import_columns["web: import oldphoto.commands.serve"] = importtime(["-c", "import oldphoto.commands.serve"], env, args.timeout)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    text = summary(restores, workers, serves, imports, args.model, args.settle)
    details = stages_table(marks) + "\n\n" + import_table(import_columns)
    print(f"\nload average at the end: {load_avg()}\n")
    print(text)
    print(f"\nmedian (min-max) of {args.repeats} run(s) each; ratios are of medians. Peak RSS: the largest process of each command's tree.\n")
    print(details)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": info, "command": " ".join(sys.argv), "model": args.model, "input_size": args.input_size, "repeats": args.repeats,
        "photos": described, "restore": restores, "workers": workers, "serve": serves, "import_serve": imports,
        "stages": marks, "importtime": import_columns,
    }, indent=1))
    return text + "\n\n" + details


if __name__ == "__main__":
    main()
