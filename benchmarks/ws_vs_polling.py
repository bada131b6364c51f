"""WebSocket push against polling: the web process's CPU to keep 1,000 clients informed with 1-second freshness.

Three runs on fresh, identically prepared servers, each measured over the same window (default 20 s):
  * idle:      the jobs run, nobody watches (what recording the events costs by itself);
  * polling:   every client sends `GET /api/jobs/{id}` once a second on a keep-alive connection (1,000 req/s);
  * websocket: every client holds `/ws/progress?job_id=...` and is told each event as it happens.

The jobs: one per user, test-only `Pause` jobs (OLDPHOTO_TEST_NODES=1) of `--job-seconds`, `--workers` running at
once, the rest queued (and told their new place whenever the queue moves). Clients are spread over users with at
most 16 each (SPEC's per-user socket cap), so 1,000 clients are 63 users, each watching its own job. Two "gate"
jobs hold the workers while everything is set up and connected; cancelling them starts the window, so every run
sees the same jobs at the same moments. Only the web process's CPU (user + system) is counted, not the workers'
(they do the same work in every run).

Tokens are signed with the server's key (OLDPHOTO_JWT_SECRET), so the 30-sessions-a-minute limit does not apply;
jobs are submitted from a few loopback source addresses (127.0.0.2, .3, ...) because the per-address limit is
60 jobs a minute. The polling client is a raw keep-alive HTTP/1.1 client and the WebSocket client a raw protocol
client, in several processes, so the client side costs little next to the server.

Run: .venv/bin/python benchmarks/ws_vs_polling.py [--clients 1000] [--seconds 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    Clients,
    RawHttp,
    Server,
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

PER_USER = 16  # SPEC: progress sockets per user
MODES = ("idle", "polling", "websocket")


# -- client processes --------------------------------------------------------------------------------------------


def client_process(conn: Any, mode: str, port: int, watch: list[tuple[str, str]], interval: float) -> None:
    child_main(conn, lambda: _client(conn, mode, port, watch, interval))


async def _client(conn: Any, mode: str, port: int, watch: list[tuple[str, str]], interval: float) -> None:
    if mode == "polling":
        await _poll(conn, port, watch, interval)
    else:
        await _push(conn, port, watch)


async def _poll(conn: Any, port: int, watch: list[tuple[str, str]], interval: float) -> None:
    gate = asyncio.Semaphore(32)
    clients = [RawHttp(port, token) for token, _ in watch]

    async def connect(client: RawHttp, job_id: str) -> None:
        async with gate:
            await client.connect()
            status, _ = await client.get(f"/api/jobs/{job_id}")
            if status != 200:
                raise RuntimeError(f"status poll answered {status}")

    await asyncio.gather(*(connect(c, job) for c, (_, job) in zip(clients, watch, strict=True)))
    conn.send(("ready", len(clients)))
    start, end = await recv_pipe(conn, 300)
    latencies: list[float] = []
    errors = 0

    async def loop(client: RawHttp, job_id: str) -> None:
        nonlocal errors
        due = start + random.random() * interval  # spread over the second, as independent tabs would be
        while True:
            now = time.time()
            if due > now:
                await asyncio.sleep(due - now)
            if time.time() >= end:
                return
            sent = time.time()
            status, _ = await client.get(f"/api/jobs/{job_id}")
            latencies.append(time.time() - sent)
            errors += status != 200
            due = max(due + interval, time.time())  # a late answer delays the next poll; no catch-up burst

    await asyncio.gather(*(loop(c, job) for c, (_, job) in zip(clients, watch, strict=True)))
    for client in clients:
        client.close()
    reconnects = sum(c.reconnects for c in clients)
    conn.send(("result", {"requests": len(latencies), "errors": errors, "reconnects": reconnects, "latencies": latencies}))


async def _push(conn: Any, port: int, watch: list[tuple[str, str]]) -> None:
    gate = asyncio.Semaphore(32)

    async def one(token: str, job_id: str) -> Any:
        async with gate:
            return await open_ws(port, f"/ws/progress?job_id={job_id}", token)

    sockets = await asyncio.gather(*(one(token, job) for token, job in watch))
    conn.send(("ready", len(sockets)))
    start, end = await recv_pipe(conn, 300)
    await asyncio.sleep(max(0.0, end - time.time()))
    frames, latencies = 0, []
    for ws in sockets:
        for received, payload in ws.messages:
            if start <= received < end:
                frames += 1
                latencies.append(received - json.loads(payload).get("ts", received))
        ws.close()
    await asyncio.sleep(0.2)
    conn.send(("result", {"frames": frames, "latencies": latencies}))


# -- one run ------------------------------------------------------------------------------------------------------


def prepare(server: Server, users: int, job_seconds: float, workers: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The gate jobs (running) and one queued job per user; returns (gates, [(token, job_id) per user])."""
    image = png_bytes()
    gate_token = server.token("gate")
    gates = []
    for i in range(workers):
        job = submit(server, gate_token, image, workflow=pause_workflow(60), source="127.0.0.2")["job_id"]
        wait_status(server, gate_token, job, {"running"})
        gates.append((gate_token, job))
    owned = []
    for u in range(users):
        token = server.token(f"user{u:04d}", ttl_s=3600)
        job = submit(server, token, image, workflow=pause_workflow(job_seconds), source=f"127.0.0.{3 + u // 50}")["job_id"]
        owned.append((token, job))
    return gates, owned


def events_in_window(server: Server, start: float, end: float) -> int:
    with sqlite3.connect(server.data_dir / "jobs.sqlite3") as db:
        return sum(1 for (body,) in db.execute("SELECT body FROM events") if start <= json.loads(body)["ts"] < end)


def run(
    mode: str, clients: int, seconds: float, job_seconds: float, workers: int, procs: int, log_level: str, stopping: list[Server]
) -> dict[str, Any]:
    users = math.ceil(clients / PER_USER)
    env = {"OLDPHOTO_TEST_NODES": "1", "OLDPHOTO_WORKERS": str(workers), "OLDPHOTO_USER_CONCURRENCY": str(max(3, workers + 1))}
    server = start_server(scratch_dir(f"poll-{mode}"), env, log_level=log_level)
    try:
        gates, owned = prepare(server, users, job_seconds, workers)
        watch = [owned[i % users] for i in range(clients)]
        shares = [watch[i::procs] for i in range(procs)] if mode != "idle" else []
        with Clients(client_process, [(mode, server.port, share, 1.0) for share in shares if share]) as group:
            ready = group.wait_all(300) if shares else []
            connected = sum(r[1] for r in ready)
            for previous in stopping:
                previous.stop()  # the last run's server is gone before this window opens
            time.sleep(0.5)
            start = time.time() + 0.5
            end = start + seconds
            group.send_all((start, end))
            time.sleep(max(0.0, start - time.time()))
            cpu0 = server.cpu_seconds()
            for token, job in gates:
                cancel(server, token, job)
            time.sleep(max(0.0, end - time.time()))
            cpu1 = server.cpu_seconds()
            wall = time.time() - start
            results = group.wait_all(120) if shares else []
        load = load_avg()
    finally:
        server.terminate()  # waited for at the end: its shutdown overlaps the next run's setup
        stopping.append(server)
    result: dict[str, Any] = {
        "mode": mode,
        "clients": connected,
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall,
        "events": events_in_window(server, start, end),
        "load_avg": load,
    }
    if mode == "polling":
        latencies = [x for r in results for x in r[1]["latencies"]]
        result["requests"] = sum(r[1]["requests"] for r in results)
        result["errors"] = sum(r[1]["errors"] for r in results)
        result["reconnects"] = sum(r[1]["reconnects"] for r in results)
        result["rate"] = result["requests"] / seconds
        result["latency_p50_ms"] = percentile(latencies, 50) * 1000
        result["latency_p99_ms"] = percentile(latencies, 99) * 1000
    elif mode == "websocket":
        latencies = [x for r in results for x in r[1]["latencies"]]
        result["frames"] = sum(r[1]["frames"] for r in results)
        result["rate"] = result["frames"] / seconds
        result["latency_p50_ms"] = percentile(latencies, 50) * 1000
        result["latency_p99_ms"] = percentile(latencies, 99) * 1000
    return result


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window")
    parser.add_argument("--job-seconds", type=float, default=10.0, help="length of each Pause job")
    parser.add_argument("--workers", type=int, default=2, help="jobs running at once (OLDPHOTO_WORKERS)")
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--log-level", default="info", help="the server's --log-level (oldphoto serve's default: info)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="runs to make (default: all three)")
    parser.add_argument("--quick", action="store_true", help="tiny run for the smoke test: 10 clients for 2 s, no idle run")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.seconds, args.job_seconds, args.procs, args.workers = 10, 2.0, 1.0, 1, 1
        args.modes = ["polling", "websocket"]  # no idle run: "above idle" is then the whole
    modes = [m for m in MODES if m in args.modes]
    raise_fd_limit()
    print_header(f"Keeping {args.clients} clients informed: polling once a second against WebSocket push")
    results: dict[str, dict[str, Any]] = {}
    stopping: list[Server] = []
    try:
        for mode in modes:
            results[mode] = run(mode, args.clients, args.seconds, args.job_seconds, args.workers, args.procs, args.log_level, stopping)
            print(json.dumps(results[mode]), flush=True)
    finally:
        for server in stopping:
            server.stop()
    idle = results["idle"]["cpu_s"] if "idle" in results else 0.0  # without the idle run, "above idle" is the whole
    rows = []
    for mode in modes:
        r = results[mode]
        extra = r["cpu_s"] - idle
        per = extra / r["requests"] * 1e6 if mode == "polling" and r["requests"] else (extra / r["frames"] * 1e6 if mode == "websocket" and r["frames"] else None)
        rows.append(
            [
                mode,
                r["clients"],
                r["events"],
                {"polling": f"{r.get('rate', 0):.0f} req/s", "websocket": f"{r.get('rate', 0):.0f} frames/s"}.get(mode, "-"),
                f"{r['cpu_s']:.2f} ({100 * r['cpu_s'] / r['wall_s']:.0f}%)",
                extra if mode != "idle" else None,
                per,
                r.get("latency_p50_ms"),
                r.get("latency_p99_ms"),
                r["load_avg"],
            ]
        )
    out = table(
        [
            "mode",
            "clients",
            "events recorded",
            "achieved",
            "web CPU s (% of 1 core)",
            "CPU above idle s",
            "µs per request / frame",
            "answer or delivery p50 ms",
            "p99 ms",
            "load avg",
        ],
        rows,
    )
    lines = [out, ""]
    poll, push = results.get("polling"), results.get("websocket")
    if poll and push:
        ratio = (poll["cpu_s"] - idle) / max(1e-9, push["cpu_s"] - idle)
        lines.append(f"polling / push, CPU above idle: {ratio:.1f}x; raw: {poll['cpu_s'] / max(1e-9, push['cpu_s']):.1f}x")
    wanted = args.clients / 1.0
    if poll and poll["rate"] < 0.95 * wanted:
        per_request = (poll["cpu_s"] - idle) / max(1, poll["requests"])
        cores = per_request * wanted
        lines.append(
            f"polling reached {poll['rate']:.0f} of {wanted:.0f} req/s; at {per_request * 1e6:.0f} µs of web CPU per request, "
            f"{wanted:.0f} req/s would need {cores:.2f} cores of one process (extrapolated, not measured): "
            f"{cores * args.seconds:.1f} CPU s per {args.seconds:.0f} s"
            + (f", {(cores * args.seconds) / max(1e-9, push['cpu_s'] - idle):.1f}x the push cost above idle" if push else "")
        )
    text = "\n".join(lines)
    print()
    print(text)
    return text


if __name__ == "__main__":
    main()
