"""Fan-out: how fast do thousands of WebSocket subscribers of one job hear each event, and what does each cost?

One `oldphoto serve` process; N sockets all follow the same job, a test-only `Pause` job (OLDPHOTO_TEST_NODES=1)
that sleeps in 50 ms steps and reports progress. The clients run in several processes (lean raw-WebSocket clients)
so the client side is not the bottleneck.

What is measured, per subscriber count (each on a fresh server):
  * delivery latency: client receive time (`time.time()` when the frame's bytes reach the client process) minus
    the event's `ts` (the server's `time.time()` when the event object is created, just before it is recorded in
    the store and published). Same machine, same clock. Over every (live event, socket) pair: p50, p99, max.
  * first socket: for each event, the earliest receipt minus `ts` (commit and publish, before the fan-out);
  * spread: for each event, last socket's receive minus first socket's receive (the fan-out loop itself).
  * RSS per idle connection: server RSS with N connected, subscribed, idle sockets minus the RSS before, / N.
  * server CPU: web process user+system seconds (not the worker) from the job's start to the last socket
    hearing `complete`.

How the job is kept idle while the sockets connect: a 60 s "blocker" Pause job holds the only worker, the measured
job waits behind it; once every socket is connected and the idle RSS is read, the blocker is cancelled and the
measured job runs.

A job can only be followed by its owner, and SPEC caps progress sockets at 16 per user, so 2,000 sockets cannot
follow one job through the public API as it stands. This benchmark starts `oldphoto serve` with that one cap
lifted in the child process (`oldphoto.server.hub.MAX_CONNECTIONS_PER_USER`); the fan-out path (bus -> follower ->
outbox -> send loop) is the same for one user or many.

Two designs side by side, each socket count on fresh servers, the order alternating: `prepared` (as `oldphoto serve`
runs: each event framed once and written to every keeping-up socket from the publishing loop, server/prepared.py)
and `asgi` (the design before it: every socket's copy through its own send task and the ASGI send).

Run: .venv/bin/python benchmarks/fanout.py [--subscribers 100 1000 2000] [--designs prepared asgi] [--seconds 10]
     [--dump FILE] [--quick]
Diagnostics (any benchmark): OLDPHOTO_BENCH_PROFILE=prefix (cProfile the web process), OLDPHOTO_BENCH_GCLOG=file
(its slow garbage collections), OLDPHOTO_BENCH_SRC=dir (run the server from a scratch copy of src/),
OLDPHOTO_BENCH_KEEP=1 (keep the servers' data dirs and logs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks._common import (  # noqa: E402
    FINAL,
    Clients,
    cancel,
    child_main,
    load_avg,
    open_ws,
    pause_workflow,
    percentile,
    png_bytes,
    print_header,
    raise_fd_limit,
    recv_pipe,
    scratch_dir,
    start_server,
    submit,
    table,
    wait_status,
)

FINAL_FRAME = re.compile(rb'"type":\s*"(?:complete|cancelled|error)"')
TARGETS = {"p99_ms": 50.0, "rss_per_conn_kb": 64.0}


# -- the client process ------------------------------------------------------------------------------------------


def client_process(conn: Any, port: int, token: str, job_id: str, count: int, timeout: float) -> None:
    child_main(conn, lambda: _client(conn, port, token, job_id, count, timeout))


async def _client(conn: Any, port: int, token: str, job_id: str, count: int, timeout: float) -> None:
    gate = asyncio.Semaphore(32)
    finals = 0
    all_final = asyncio.Event()

    def make_handler(store: list[tuple[float, bytes]]) -> Any:
        def on_text(now: float, payload: bytes) -> None:
            nonlocal finals
            store.append((now, payload))
            if FINAL_FRAME.search(payload):
                finals += 1
                if finals >= count:
                    all_final.set()

        return on_text

    stores: list[list[tuple[float, bytes]]] = [[] for _ in range(count)]

    async def one(i: int) -> Any:
        async with gate:
            return await open_ws(port, f"/ws/progress?job_id={job_id}", token, make_handler(stores[i]))

    sockets = await asyncio.gather(*(one(i) for i in range(count)))
    conn.send(("ready", len(sockets)))
    try:
        await asyncio.wait_for(all_final.wait(), timeout)
    except TimeoutError:
        pass
    conn.send(("done", time.time(), finals))
    await recv_pipe(conn, 120)  # "close": the parent has read the server's CPU
    for ws in sockets:
        ws.close()
    await asyncio.sleep(0.2)
    rows = []
    for i, store in enumerate(stores):
        for received, payload in store:
            event = json.loads(payload)
            if "seq" in event:
                rows.append((i, event["seq"], event["ts"], received, event["type"] in FINAL))
    array = np.array(rows, dtype=np.float64) if rows else np.zeros((0, 5))
    conn.send(("result", array))


# -- one measurement ---------------------------------------------------------------------------------------------


DESIGNS = ("prepared", "asgi")


def measure(subscribers: int, seconds: float, procs: int, log_level: str, design: str = "prepared") -> dict[str, Any]:
    env = {"OLDPHOTO_TEST_NODES": "1", "OLDPHOTO_WORKERS": "1", "OLDPHOTO_USER_CONCURRENCY": "5"}
    asgi_only = design == "asgi"
    with start_server(scratch_dir("fanout"), env, lift_connection_cap=True, asgi_only=asgi_only, log_level=log_level) as server:
        token = server.token("fan")
        image = png_bytes()
        blocker = submit(server, token, image, workflow=pause_workflow(60))["job_id"]
        wait_status(server, token, blocker, {"running"})
        target = submit(server, token, image, workflow=pause_workflow(seconds))["job_id"]

        asyncio.run(_warm_up(server.port, token, target))
        time.sleep(1.0)
        baseline_rss = server.rss()

        shares = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
        shares = [s for s in shares if s]
        with Clients(client_process, [(server.port, token, target, n, seconds + 60) for n in shares]) as clients:
            ready = clients.wait_all(180)
            connected = sum(r[1] for r in ready)
            time.sleep(2.0)
            idle_rss = server.rss()
            open_sockets = int(server.metric("oldphoto_ws_connections"))

            t_live = time.time()
            cpu0 = server.cpu_seconds()
            cancel(server, token, blocker)
            done = clients.wait_all(seconds + 90)
            cpu1 = server.cpu_seconds()
            t_done = max(d[1] for d in done)
            finals = sum(d[2] for d in done)
            clients.send_all("close")
            results = clients.wait_all(120)
        load = load_avg()

    offset = 0
    arrays = []
    for (_, array), n in zip(results, shares, strict=True):
        if len(array):
            array = array.copy()
            array[:, 0] += offset
            arrays.append(array)
        offset += n
    events = np.concatenate(arrays) if arrays else np.zeros((0, 5))
    live = events[events[:, 2] >= t_live]
    latency_ms = (live[:, 3] - live[:, 2]) * 1000
    seqs = np.unique(live[:, 1])
    spreads, firsts, per_event = [], [], []
    for seq in seqs:
        rows = live[live[:, 1] == seq]
        per_event.append({"seq": int(seq), "ts": float(rows[0, 2]), "first_ms": float((rows[:, 3].min() - rows[0, 2]) * 1000),
                          "p50_ms": float(np.percentile(rows[:, 3] - rows[0, 2], 50) * 1000), "last_ms": float((rows[:, 3].max() - rows[0, 2]) * 1000)})
        spreads.append((rows[:, 3].max() - rows[:, 3].min()) * 1000)
        firsts.append((rows[:, 3].min() - rows[0, 2]) * 1000)
    expected = len(seqs) * subscribers
    wall = t_done - t_live
    return {
        "subscribers": subscribers,
        "design": design,
        "connected": min(connected, open_sockets),
        "live_events": len(seqs),
        "frames": len(live),
        "missing": expected - len(live),
        "finals": finals,
        "p50_ms": percentile(latency_ms, 50),
        "p99_ms": percentile(latency_ms, 99),
        "max_ms": float(latency_ms.max()) if len(latency_ms) else float("nan"),
        "first_p50_ms": percentile(firsts, 50),
        "first_max_ms": float(max(firsts)) if firsts else float("nan"),
        "spread_p50_ms": percentile(spreads, 50),
        "spread_max_ms": float(max(spreads)) if spreads else float("nan"),
        "rss_per_conn_kb": (idle_rss - baseline_rss) / max(1, connected) / 1024,
        "baseline_rss_mb": baseline_rss / 2**20,
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall,
        "cpu_per_frame_us": (cpu1 - cpu0) / max(1, len(live)) * 1e6,
        "load_avg": load,
        "per_event": per_event,
    }


def compare(rows: list[dict[str, Any]]) -> str:
    """The previous design (asgi) over the served one (prepared), for each socket count both ran at."""
    lines = []
    for n in sorted({r["subscribers"] for r in rows}):
        by = {r["design"]: r for r in rows if r["subscribers"] == n}
        if set(DESIGNS) <= set(by):
            old, new = by["asgi"], by["prepared"]
            lines.append(
                f"{n} sockets, asgi / prepared: p50 {old['p50_ms'] / new['p50_ms']:.1f}x, p99 {old['p99_ms'] / new['p99_ms']:.1f}x, "
                f"CPU per frame {old['cpu_per_frame_us'] / new['cpu_per_frame_us']:.1f}x"
            )
    return "\n".join(lines)


async def _warm_up(port: int, token: str, job_id: str, n: int = 20) -> None:
    """Open and close a few sockets first, so lazy imports and first-use caches are not counted per connection."""
    sockets = [await open_ws(port, f"/ws/progress?job_id={job_id}", token) for _ in range(n)]
    await asyncio.sleep(0.3)
    for ws in sockets:
        ws.close()
    await asyncio.sleep(0.5)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000, 2000], help="sockets following the one job (one server each)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the Pause job that speaks")
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--log-level", default="info", help="the server's --log-level (oldphoto serve's default: info)")
    parser.add_argument("--dump", type=Path, help="write every measurement, with per-event timings, to this JSON file")
    parser.add_argument(
        "--designs",
        nargs="+",
        choices=DESIGNS,
        default=list(DESIGNS),
        help="prepared: as served (prepared frames written from the publish loop); asgi: the design before it, every event through ASGI",
    )
    parser.add_argument("--quick", action="store_true", help="tiny run for the smoke test: 20 sockets, a 2 s job")
    args = parser.parse_args(argv)
    if args.quick:
        args.subscribers, args.seconds, args.procs = [20], 2.0, 2
    raise_fd_limit()
    print_header("WebSocket fan-out: N sockets following one job")
    rows = []
    for i, n in enumerate(args.subscribers):
        designs = args.designs if i % 2 == 0 else args.designs[::-1]  # alternate, so drift in load hits both alike
        for design in designs:
            result = measure(n, args.seconds, min(args.procs, n), args.log_level, design)
            print(json.dumps({k: v for k, v in result.items() if k != "per_event"}), flush=True)
            rows.append(result)
    rows.sort(key=lambda r: (r["subscribers"], DESIGNS.index(r["design"])))
    if args.dump:
        args.dump.write_text(json.dumps(rows, indent=1))
    out = table(
        [
            "sockets",
            "design",
            "live events",
            "frames received / missing",
            "latency p50 ms",
            "p99 ms",
            "max ms",
            "first socket p50 / max ms",
            "fan-out spread p50 / max ms",
            "RSS per idle socket KB",
            "server CPU s (% of 1 core)",
            "CPU per frame µs",
            "load avg",
        ],
        [
            [
                r["subscribers"],
                r["design"],
                r["live_events"],
                f"{r['frames']} / {r['missing']}",
                r["p50_ms"],
                r["p99_ms"],
                r["max_ms"],
                f"{r['first_p50_ms']:.3g} / {r['first_max_ms']:.3g}",
                f"{r['spread_p50_ms']:.3g} / {r['spread_max_ms']:.3g}",
                r["rss_per_conn_kb"],
                f"{r['cpu_s']:.2f} ({100 * r['cpu_s'] / r['wall_s']:.0f}%)",
                r["cpu_per_frame_us"],
                r["load_avg"],
            ]
            for r in rows
        ],
    )
    print()
    print(out)
    print()
    print(compare(rows))
    served = [r for r in rows if r["design"] == "prepared"] or rows
    biggest = served[-1]
    print()
    print(
        f"targets at {biggest['subscribers']} sockets: p99 {biggest['p99_ms']:.1f} ms (target < {TARGETS['p99_ms']:.0f}): "
        f"{'met' if biggest['p99_ms'] < TARGETS['p99_ms'] else 'NOT met'}; "
        f"RSS per idle socket {biggest['rss_per_conn_kb']:.1f} KB (target < {TARGETS['rss_per_conn_kb']:.0f}): "
        f"{'met' if biggest['rss_per_conn_kb'] < TARGETS['rss_per_conn_kb'] else 'NOT met'}"
    )
    return out


if __name__ == "__main__":
    main()
