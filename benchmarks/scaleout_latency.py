"""Scale-out against embedded: how much later does a client hear each event when the job runs on a worker node and
the client talks to another web node, with PostgreSQL and Redis in between?

Two designs, side by side, the order alternating each round:
  * embedded: one `oldphoto serve` (SQLite store, its own worker process); the sockets follow a `Pause` job on it;
  * scale-out: web node A admits the job, web node B holds the sockets, one `oldphoto worker` runs it; one
    PostgreSQL database and one Redis prefix of their own.
N sockets (one user: at most 16, SPEC's cap) follow each job from its start; the `Pause` node (OLDPHOTO_TEST_NODES=1)
reports a step every 50 ms. Latency = the client's `time.time()` when a frame arrives minus the event's `ts` (when
the event was made, in the process that records it; same clock, same machine): p50, p99, max over every (event,
socket), and the ratio of the scale-out figures to the embedded ones.

Needs the PostgreSQL and Redis of the machine, found as the tests find them (tests/helpers/services.py:
OLDPHOTO_TEST_POSTGRES, OLDPHOTO_TEST_REDIS).

Run: .venv/bin/python benchmarks/scaleout_latency.py [--sockets 16] [--seconds 5] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import (  # noqa: E402
    FINAL,
    Server,
    open_ws,
    pause_workflow,
    percentile,
    png_bytes,
    print_header,
    scratch_dir,
    start_server,
    submit,
    table,
)
from tests.helpers.services import postgres_database  # noqa: E402

REDIS = os.environ.get("OLDPHOTO_TEST_REDIS", "redis://127.0.0.1:6379/0")
DESIGNS = ("embedded", "scale-out")


@contextmanager
def worker_node(env: dict[str, str], data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "worker.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "oldphoto", "worker"],
            env={**os.environ, "PYTHONPATH": os.environ.get("OLDPHOTO_BENCH_SRC") or str(REPO / "src"), "OLDPHOTO_DATA_DIR": str(data_dir), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            process.terminate()
            process.wait(20)


@contextmanager
def deployment(design: str) -> Iterator[tuple[Server, Server]]:
    """(the node that admits, the node the clients follow on): the same server twice when embedded."""
    base = {"OLDPHOTO_TEST_NODES": "1", "OLDPHOTO_WORKERS": "1", "OLDPHOTO_USER_CONCURRENCY": "100"}
    with ExitStack() as stack:
        if design == "embedded":
            server = stack.enter_context(start_server(scratch_dir("scaleout-embedded"), base, log_level="warning"))
            yield server, server
            return
        url = stack.enter_context(postgres_database())
        secret = secrets.token_urlsafe(32)
        env = {**base, "OLDPHOTO_DATABASE_URL": url, "OLDPHOTO_BROKER_URL": REDIS, "OLDPHOTO_BROKER_PREFIX": f"bench-{secrets.token_hex(4)}", "OLDPHOTO_JWT_SECRET": secret}
        stack.enter_context(worker_node(env, scratch_dir("scaleout-worker")))  # first: a web node is ready when a worker is alive
        nodes = []
        for name in ("a", "b"):
            node = stack.enter_context(start_server(scratch_dir(f"scaleout-web-{name}"), env, log_level="warning"))
            node.secret = secret  # the benchmark signs tokens with the key every node shares
            nodes.append(node)
        yield nodes[0], nodes[1]


async def follow(server: Server, token: str, job_id: str, sockets: int) -> list[float]:
    """Latencies (ms) of the live events (made once every socket was open) heard by every socket."""
    heard: list[tuple[float, float]] = []  # (received, event ts)
    finished = asyncio.Event()
    open_count = [sockets]

    def on_text(received: float, payload: bytes) -> None:
        event = json.loads(payload)
        if "seq" not in event:
            return
        heard.append((received, event["ts"]))
        if event["type"] in FINAL:
            open_count[0] -= 1
            if open_count[0] == 0:
                finished.set()

    connections = [await open_ws(server.port, f"/ws/progress?job_id={job_id}", token, on_text) for _ in range(sockets)]
    all_open = time.time()
    await asyncio.wait_for(finished.wait(), 120)
    for connection in connections:
        connection.close()
    return [(received - ts) * 1000 for received, ts in heard if ts >= all_open]  # replays of earlier events left out


def measure(design: str, sockets: int, seconds: float) -> dict[str, Any]:
    with deployment(design) as (admits, serves):
        token = admits.token("bench")
        blocker = submit(admits, token, png_bytes(), workflow=pause_workflow(0.5))["job_id"]  # warms the worker up
        asyncio.run(follow(serves, token, blocker, 1))
        job_id = submit(admits, token, png_bytes(), workflow=pause_workflow(seconds))["job_id"]
        started = time.perf_counter()
        latencies = asyncio.run(follow(serves, token, job_id, sockets))
        wall = time.perf_counter() - started
    live = latencies
    return {
        "design": design,
        "sockets": sockets,
        "frames": len(live),
        "p50_ms": percentile(live, 50),
        "p99_ms": percentile(live, 99),
        "max_ms": max(live) if live else float("nan"),
        "wall_s": wall,
        "load_avg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=16, help="sockets following the job (one user: at most 16)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the Pause job")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny run for the smoke test: 2 sockets, a 1 s job, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.sockets, args.seconds, args.rounds = 2, 1.0, 1
    print_header("Scale-out against embedded: event delivery latency")
    rows = []
    for round_index in range(args.rounds):
        for design in DESIGNS if round_index % 2 == 0 else DESIGNS[::-1]:
            result = measure(design, args.sockets, args.seconds)
            print(json.dumps(result), flush=True)
            rows.append(result)
    out = table(
        ["design", "round", "sockets", "frames", "latency p50 ms", "p99 ms", "max ms", "load avg"],
        [[r["design"], i // 2 + 1, r["sockets"], r["frames"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["load_avg"]] for i, r in enumerate(rows)],
    )
    print()
    print(out)
    by = {design: [r for r in rows if r["design"] == design] for design in DESIGNS}
    p50 = {design: sorted(r["p50_ms"] for r in results)[len(results) // 2] for design, results in by.items()}
    p99 = {design: sorted(r["p99_ms"] for r in results)[len(results) // 2] for design, results in by.items()}
    print()
    print(
        f"scale-out / embedded, medians over rounds: p50 {p50['scale-out']:.2f} / {p50['embedded']:.2f} ms = "
        f"{p50['scale-out'] / p50['embedded']:.2f}x; p99 {p99['scale-out']:.2f} / {p99['embedded']:.2f} ms = {p99['scale-out'] / p99['embedded']:.2f}x"
    )
    return out


if __name__ == "__main__":
    main()
