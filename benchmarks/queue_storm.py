"""Queue storm: thousands of waiting users, each watching their own queued photo's place live while the queue drains.

N distinct users each submit one job (a test-only `Pause` job of `--job-seconds`, OLDPHOTO_TEST_NODES=1, one worker:
cheap, so the web process is what is measured) and follow it over a WebSocket of their own
(`/ws/progress?job_id=...`, the token in `Sec-WebSocket-Protocol: bearer, <token>`). A "blocker" job holds the only
worker while the N jobs are admitted and the N sockets connect; cancelling it starts the drain window. The window
ends when every socket has heard the place it has after `--advances` advances of the queue (or the job that ran), or
after `--window-s` seconds. Only the public API is used, so the same script measures any design of the server.

What is measured, per mode (embedded: one `oldphoto serve`; scale-out: one `oldphoto serve` web node and one
`oldphoto worker` on a fresh PostgreSQL database and a Redis prefix of their own) and N:
  * place-update delay: for each `queued` event a client receives for one of the first `--advances` advances, the
    client's receive time (`time.time()` when the frame's bytes reach the client process) minus the event's `ts`
    (stamped by the server when the place changed); p50, p99, max over users and advances; how many advances the
    server made in the window, and how many the clients heard (advance k = the place k lower than the one the
    socket was told before the window: its replay, else the admission's answer);
  * event-loop lag of the web process: from /metrics when it has `oldphoto_loop_lag_seconds` (a histogram: p99
    over the window from its buckets) and `oldphoto_loop_lag_max_seconds` (a gauge, read at the window's end); and
    always from outside: the latency of `GET /healthz` polled every 50 ms through the window (p50, p99, max);
  * web CPU per advance: the web process's user + system seconds (not its worker's) in the window / the server's
    advances (the fall of /healthz `queued`); and the same above idle: the web process's CPU rate over `--idle-s`
    seconds just before the window (everything connected, the blocker running, /healthz polled; printed with the
    table, with /healthz's idle p50) times the window, subtracted. Web RSS at the window's end;
  * admission: the N jobs submitted with `--in-flight` (32) requests in flight, each user from a loopback source
    address of its own (127.10.x.y: the per-address limit is 60 jobs a minute); jobs/s over the first 100 and the
    last 100 submissions (the queue holding ~0 and ~N-100 jobs), and POST latency p50 / p99;
  * durable bytes per job, read after the window: embedded, the growth of the SQLite file (jobs.sqlite3 plus its
    -wal) from before admission / N, and `sum(length(body))` of the events table / jobs; scale-out,
    `pg_total_relation_size('events')` / jobs, and the same sum of event bodies / jobs.

Tokens are signed with the server's key (OLDPHOTO_JWT_SECRET; `/api/session` allows 30 a minute per address);
OLDPHOTO_QUEUE_MAX is set above N. The clients: the lean raw WebSocket client of benchmarks/_common.py on uvloop, in
`--procs` processes (default one per 2,500 sockets, at most 4), each from a loopback address of its own; each
process reports its CPU seconds in the window, printed with the table, so a client side that could not keep up
shows. The per-user socket cap (16) is not lifted: each user has one socket.

Run: .venv/bin/python benchmarks/queue_storm.py [--users 1000 10000] [--mode embedded|scaleout|both] [--advances 30]
     [--window-s 300] [--job-seconds 0.3] [--idle-s 3] [--procs N] [--in-flight 32] [--dump FILE] [--quick]
Scale-out needs the PostgreSQL and Redis of the machine, found as the tests find them (tests/helpers/services.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from benchmarks._common import (  # noqa: E402
    HOST,
    Clients,
    RawHttp,
    RawWebSocket,
    Server,
    cancel,
    child_main,
    load_avg,
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
from benchmarks.scaleout_latency import worker_node  # noqa: E402

MODES = ("embedded", "scaleout")
SOCKETS_PER_PROC = 2500
HEALTH_INTERVAL_S = 0.05
LAG_HISTOGRAM = "oldphoto_loop_lag_seconds"
LAG_MAX = "oldphoto_loop_lag_max_seconds"


# -- the clients (one process per share of the users) -----------------------------------------------------------


def client_process(conn: Any, port: int, source: str, users: list[tuple[str, str, int]], advances: int, timeout: float) -> None:
    child_main(conn, lambda: _client(conn, port, source, users, advances, timeout))


async def _client(conn: Any, port: int, source: str, users: list[tuple[str, str, int]], advances: int, timeout: float) -> None:
    """Connect one socket per (token, job_id, place at admission); after "go", say when every socket has heard the
    place `advances` advances later (or that its job left the queue); after "close", send every live frame."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(32)

    async def one(token: str, job_id: str) -> RawWebSocket:
        async with gate:
            _, ws = await asyncio.wait_for(
                loop.create_connection(lambda: RawWebSocket(f"/ws/progress?job_id={job_id}", token, port), HOST, port, local_addr=(source, 0)), 30
            )
            status = await asyncio.wait_for(ws.opened, 30)
            if status != 101:
                raise ConnectionError(f"WebSocket handshake answered {status}")
            return ws

    sockets = await asyncio.gather(*(one(token, job_id) for token, job_id, _ in users))
    conn.send(("ready", len(sockets)))
    _, t_live = await recv_pipe(conn, timeout)
    cpu0 = time.process_time()
    # The place each socket was last told before the window (its replay), else the one the admission answered.
    told = [_last_place(ws.messages) for ws in sockets]
    places = [t if t is not None else p0 for t, (_, _, p0) in zip(told, users, strict=True)]
    differ = sum(1 for t, (_, _, p0) in zip(told, users, strict=True) if t != p0)
    conn.send(("going",))

    pending = set(range(len(users)))
    checked = [0] * len(users)
    stopped = False
    while pending and not stopped:
        await asyncio.sleep(0.2)
        stopped = conn.poll()  # "stop": the parent's window ran out
        for i in list(pending):
            messages = sockets[i].messages
            if sockets[i].closed.done():
                pending.discard(i)  # lost: counted below
            elif len(messages) > checked[i]:
                checked[i] = len(messages)
                if _caught_up(json.loads(messages[-1][1]), t_live, places[i] - advances):
                    pending.discard(i)
    if stopped:
        conn.recv()
    conn.send(("caught_up", time.time(), len(users) - len(pending), time.process_time() - cpu0))

    while (await recv_pipe(conn, timeout)) != "close":  # a late "stop" meant for slower processes
        pass
    lost = sum(1 for ws in sockets if ws.closed.done())
    for ws in sockets:
        ws.close()
    await asyncio.sleep(0.2)
    rows = []  # (place before the window, is queued, place or -1, ts, received)
    for ws, p0 in zip(sockets, places, strict=True):
        for received, payload in ws.messages:
            event = json.loads(payload)
            ts = event.get("ts")
            if isinstance(ts, (int, float)) and ts >= t_live:
                position = event.get("position")
                rows.append((p0, event.get("type") == "queued", position if isinstance(position, int) else -1, ts, received))
    conn.send(("result", np.array(rows, dtype=np.float64).reshape(-1, 5), lost, differ))


def _last_place(messages: list[tuple[float, bytes]]) -> int | None:
    for _, payload in reversed(messages):
        event = json.loads(payload)
        if event.get("type") == "queued" and isinstance(event.get("position"), int):
            return event["position"]
    return None


def _caught_up(event: dict[str, Any], t_live: float, target: int) -> bool:
    """A live event saying the place after the window's advances, or any live non-place event (the job left the queue)."""
    ts = event.get("ts")
    if not isinstance(ts, (int, float)) or ts < t_live:
        return False
    if event.get("type") != "queued":
        return True
    position = event.get("position")
    return isinstance(position, int) and position <= target


# -- admission ----------------------------------------------------------------------------------------------------


def source_address(i: int) -> str:
    """User i's own loopback address (Linux answers on all of 127/8): the per-address job limit never binds."""
    return f"127.10.{i // 250}.{i % 250 + 1}"


async def admit(port: int, tokens: list[str], image: bytes, workflow: str, in_flight: int) -> tuple[list[dict[str, Any]], list[float], list[float], float]:
    """POST one job per token, `in_flight` at a time, each on a new connection from its user's address.

    Returns (answers in user order, completion times in order of completion, latencies, start time); times are
    perf_counter seconds."""
    boundary = f"storm{secrets.token_hex(8)}"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="workflow"\r\n\r\n{workflow}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode() + image + f"\r\n--{boundary}--\r\n".encode()
    answers: list[dict[str, Any]] = [{} for _ in tokens]
    done: list[float] = []
    latencies: list[float] = []
    next_index = iter(range(len(tokens)))

    async def post(i: int) -> None:
        head = (
            f"POST /api/jobs HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {tokens[i]}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        sent = time.perf_counter()
        reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source_address(i), 0))
        try:
            writer.write(head + body)
            response = await reader.readuntil(b"\r\n\r\n")
            status = int(response.split(b" ", 2)[1])
            length = 0
            for line in response.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            text = await reader.readexactly(length)
        finally:
            writer.close()
        now = time.perf_counter()
        if status != 202:
            raise RuntimeError(f"job {i}: POST /api/jobs answered {status}: {text[:300]!r}")
        answers[i] = json.loads(text)
        done.append(now)
        latencies.append(now - sent)
        if len(done) % 1000 == 0:  # long admissions say how they go (a run stopped early still shows the trend)
            print(
                f"admitted {len(done)}: the last 100 at {rate(done, start, False, 100):.1f} jobs/s, "
                f"POST p50 {percentile(latencies[-100:], 50) * 1000:.0f} ms",
                flush=True,
            )

    async def lane() -> None:
        for i in next_index:
            await post(i)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return answers, done, latencies, start


def rate(times: list[float], start: float, first: bool, window: int) -> float:
    """Jobs/s over the first `window` completions (from the start) or the last `window` (from the one before them)."""
    if len(times) < 2:
        return float("nan")
    window = max(1, min(window, len(times) - 1))
    if first:
        return window / (times[window - 1] - start)
    return window / (times[-1] - times[-1 - window])


# -- /healthz from outside, and /metrics --------------------------------------------------------------------------


class HealthPoller:
    """GET /healthz every 50 ms on one keep-alive connection, in a thread of its own: (sent, latency s, queued)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.samples: list[tuple[float, float, int]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="healthz-poller", daemon=True)

    def __enter__(self) -> HealthPoller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(60)

    async def _run(self) -> None:
        client = RawHttp(self.port, self.token)
        await client.connect()
        due = time.perf_counter()
        while not self.stopping.is_set():
            sent_wall, sent = time.time(), time.perf_counter()
            status, body = await client.get("/healthz")
            latency = time.perf_counter() - sent
            queued = json.loads(body).get("queued", -1) if status == 200 else -1
            self.samples.append((sent_wall, latency, queued))
            due = max(due + HEALTH_INTERVAL_S, time.perf_counter())  # a late answer delays the next poll; no burst
            await asyncio.sleep(due - time.perf_counter())
        client.close()


def scrape(server: Server) -> dict[str, Any]:
    """The loop-lag histogram's cumulative buckets and the max gauge, when /metrics has them (else empty)."""
    return lag_metrics(httpx.get(f"{server.url}/metrics", timeout=120).text)


def lag_metrics(text: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        if family.name == LAG_HISTOGRAM:
            buckets: dict[float, float] = {}
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
            found["buckets"] = buckets
        elif family.name == LAG_MAX:
            found["max"] = max((s.value for s in family.samples), default=float("nan"))
    return found


def window_max(before: dict[str, Any], after: dict[str, Any]) -> float:
    """The longest lag in the window, as the upper bound of the highest bucket that grew in it (the gauge is the
    maximum since the process started, start-up included)."""
    if "buckets" not in after:
        return float("nan")
    old = before.get("buckets", {})
    bounds = sorted(after["buckets"])
    grew = [b for b, below in zip(bounds, [0.0, *bounds[:-1]], strict=True) if _in(after, b) - _in(old, b) > _in(after, below) - _in(old, below)]
    if not grew:
        return 0.0
    top = grew[-1]
    return after.get("max", float("nan")) if math.isinf(top) else top


def _in(metrics: dict[str, Any], bound: float) -> float:
    return 0.0 if bound == 0.0 else metrics.get("buckets", {}).get(bound, 0.0)


def histogram_quantile(before: dict[str, Any], after: dict[str, Any], q: float) -> float:
    """Prometheus's histogram_quantile over the increase of the buckets between two scrapes (linear in a bucket)."""
    if "buckets" not in after:
        return float("nan")
    old = before.get("buckets", {})
    bounds = sorted(after["buckets"])
    counts = [after["buckets"][b] - old.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower  # above the highest finite bucket: its bound, as Prometheus answers
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


# -- the store's bytes --------------------------------------------------------------------------------------------


@dataclass
class Deployment:
    mode: str
    server: Server  # the web node
    database_url: str | None = None  # scale-out: the PostgreSQL database

    @property
    def sqlite(self) -> Path:
        return self.server.data_dir / "jobs.sqlite3"

    def store_bytes(self) -> int:
        """Embedded: the SQLite file plus its -wal; scale-out: pg_total_relation_size of the events table."""
        if self.database_url is None:
            return sum(p.stat().st_size for p in (self.sqlite, self.sqlite.with_name(self.sqlite.name + "-wal")) if p.exists())
        return int(self._pg("SELECT pg_total_relation_size('events')")[0])

    def event_bodies(self) -> tuple[int, int, int]:
        """(jobs, events, sum of event body lengths), read in one snapshot."""
        query = "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM events), (SELECT coalesce(sum(length(body)), 0) FROM events)"
        if self.database_url is None:
            with sqlite3.connect(f"file:{self.sqlite}?mode=ro", uri=True, timeout=60) as db:
                row = db.execute(query).fetchone()
        else:
            row = self._pg(query)
        return int(row[0]), int(row[1]), int(row[2])

    def _pg(self, query: str) -> tuple[Any, ...]:
        import psycopg

        assert self.database_url is not None
        with psycopg.connect(self.database_url.replace("+psycopg", "", 1)) as db:
            return db.execute(query).fetchone()


@contextmanager
def deployment(mode: str, users: int, log_level: str) -> Iterator[Deployment]:
    env = {
        "OLDPHOTO_TEST_NODES": "1",
        "OLDPHOTO_WORKERS": "1",
        "OLDPHOTO_QUEUE_MAX": str(users + 100),
        "OLDPHOTO_JOB_TIMEOUT_S": "3600",  # the blocker may run for as long as admission takes
        "OLDPHOTO_MAX_JOB_SECONDS": "7200",  # and is costed at 1,800 s (30 Pause nodes of 60 s)
    }
    with ExitStack() as stack:
        left_behind: list[psutil.Process] = []
        stack.callback(_kill_all, left_behind)  # runs last
        if mode == "embedded":
            server = stack.enter_context(start_server(scratch_dir("storm"), env, log_level=log_level))
            stack.callback(lambda: left_behind.extend(_node_processes()))  # runs first
            yield Deployment(mode, server)
            return
        from tests.helpers.services import postgres_database, redis_namespace

        url = stack.enter_context(postgres_database())
        redis_url, prefix = stack.enter_context(redis_namespace())
        secret = secrets.token_urlsafe(32)
        env |= {"OLDPHOTO_DATABASE_URL": url, "OLDPHOTO_BROKER_URL": redis_url, "OLDPHOTO_BROKER_PREFIX": prefix, "OLDPHOTO_JWT_SECRET": secret}
        worker_dir = scratch_dir("storm-worker")
        if os.environ.get("OLDPHOTO_BENCH_KEEP") != "1":  # as the web node's, which Server.stop removes
            stack.callback(shutil.rmtree, worker_dir, ignore_errors=True)
        stack.enter_context(_stopped_anyway(worker_node(env, worker_dir)))  # first: a web node is ready once a worker is alive
        _wait_for_worker(url)
        server = stack.enter_context(start_server(scratch_dir("storm-web"), env, log_level=log_level))
        server.secret = secret  # the benchmark signs tokens with the key the nodes share
        stack.callback(lambda: left_behind.extend(_node_processes()))  # runs first
        yield Deployment(mode, server, url)


def _node_processes() -> list[psutil.Process]:
    """The nodes this benchmark started and all their children (a worker pool, the upload inspector)."""
    found = []
    for child in psutil.Process().children():
        try:
            if "oldphoto" in " ".join(child.cmdline()):
                found += [child, *child.children(recursive=True)]
        except psutil.Error:
            pass
    return found


def _kill_all(processes: list[psutil.Process]) -> None:
    """A node that overran its stop is killed, and its children would live on with no parent (seen: the upload
    inspector of a web process killed after its 15 s): whatever is still running is killed."""
    for process in processes:
        try:
            if process.is_running():
                process.kill()
        except psutil.Error:
            pass


@contextmanager
def _stopped_anyway(node: Any) -> Iterator[None]:
    """`worker_node`, whose stop waits 20 s: a worker busy handing a long queue back may take longer (then killed)."""
    node.__enter__()
    try:
        yield
    finally:
        try:
            node.__exit__(None, None, None)
        except subprocess.TimeoutExpired:
            print("note: the worker node did not stop within 20 s; killed", flush=True)


def _wait_for_worker(url: str, timeout: float = 90) -> None:
    """Until the worker node has made the tables and registered: a web node starting meanwhile would run the same
    CREATE TABLEs at the same moment on the fresh database and can fail on PostgreSQL's catalog (seen here)."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(url.replace("+psycopg", "", 1), autocommit=True) as db:
        while time.monotonic() < deadline:
            if db.execute("SELECT to_regclass('worker_nodes')").fetchone()[0] and db.execute("SELECT count(*) FROM worker_nodes").fetchone()[0]:
                return
            time.sleep(0.2)
    raise RuntimeError("the worker node did not register")


def blocker_workflow() -> str:
    """Holds the only worker while everything is admitted and connected: 30 `Pause` steps of 60 s (SPEC's limits)."""
    pauses = 30
    nodes: dict[str, Any] = {"1": {"class_type": "LoadImage", "inputs": {}}}
    for i in range(2, pauses + 2):
        nodes[str(i)] = {"class_type": "Pause", "inputs": {"image": [str(i - 1), 0], "seconds": 60}}
    nodes[str(pauses + 2)] = {"class_type": "SaveImage", "inputs": {"images": [str(pauses + 1), 0]}}
    return json.dumps(nodes)


# -- one measurement ----------------------------------------------------------------------------------------------


def measure(
    mode: str, users: int, advances: int, window_s: float, job_seconds: float, procs: int, in_flight: int, log_level: str, idle_s: float
) -> dict[str, Any]:
    image = png_bytes()
    with deployment(mode, users, log_level) as deployed:
        server = deployed.server
        blocker_token = server.token("storm-blocker")
        blocker = submit(server, blocker_token, image, workflow=blocker_workflow())["job_id"]
        if wait_status(server, blocker_token, blocker, {"running"}, timeout=60)["status"] != "running":
            raise RuntimeError("the blocker job did not start")
        store_before = deployed.store_bytes()
        rss_before = server.rss()

        tokens = [server.token(f"storm-{i:05d}") for i in range(users)]
        answers, done, latencies, start = asyncio.run(admit(server.port, tokens, image, pause_workflow(job_seconds), in_flight))
        window = min(100, max(1, users // 2))
        admission = {
            "first_jobs_s": rate(done, start, True, window),
            "last_jobs_s": rate(done, start, False, window),
            "all_jobs_s": len(done) / (done[-1] - start),
            "post_p50_ms": percentile(latencies, 50) * 1000,
            "post_p99_ms": percentile(latencies, 99) * 1000,
        }
        print(json.dumps({"mode": mode, "users": users, "admission": admission}), flush=True)
        places = [int(a.get("position") or 0) for a in answers]
        if sorted(places) != list(range(1, users + 1)):
            print(f"note: places at admission are not 1..{users} (first {places[:5]})", flush=True)

        watchers = [(tokens[i], answers[i]["job_id"], places[i]) for i in range(users)]
        shares = [watchers[p::procs] for p in range(procs)]
        with Clients(client_process, [(server.port, f"127.20.0.{p + 1}", share, advances, window_s + 600) for p, share in enumerate(shares)]) as clients:
            connected = sum(r[1] for r in clients.wait_all(600))
            time.sleep(1.0)
            rss_connected = server.rss()
            with HealthPoller(server.port, blocker_token) as poller, sampled(server, mode):
                # Idle first: everything connected, the blocker holding the worker, /healthz polled. What the web
                # process spends then (the poller's requests included) is subtracted for "above idle".
                time.sleep(0.5)
                idle_cpu0, t_idle = server.cpu_seconds(), time.time()
                time.sleep(idle_s)
                idle_rate = (server.cpu_seconds() - idle_cpu0) / (time.time() - t_idle)
                idle_health = [latency * 1000 for sent, latency, _ in poller.samples if sent >= t_idle]
                metrics0 = scrape(server)
                t_live = time.time()
                clients.send_all(("go", t_live))
                clients.wait_all(60)
                cpu0, t_cancel = server.cpu_seconds(), time.time()
                print(f"window from {t_cancel:.3f}", flush=True)
                cancel(server, blocker_token, blocker)  # the first advance
                caught = _wait_caught_up(clients, t_cancel + window_s)
                t_end = time.time()
                cpu1 = server.cpu_seconds()
            queued_end = int(httpx.get(f"{server.url}/healthz", timeout=120).json()["queued"])
            store_after = deployed.store_bytes()  # the queue goes on moving: read what it holds now, then the rest
            jobs, events, body_bytes = deployed.event_bodies()
            rss_end = server.rss()
            metrics1 = scrape(server)
            clients.send_all("close")
            results = clients.wait_all(300)
        load = load_avg()

    rows = np.concatenate([r[1] for r in results]) if results else np.zeros((0, 5))
    lost = sum(r[2] for r in results)
    if differ := sum(r[3] for r in results):
        print(f"note: {differ} sockets were not told (before the window) the place their admission answered", flush=True)
    queued_rows = rows[rows[:, 1] == 1]
    step = queued_rows[:, 0] - queued_rows[:, 2]  # the advance each place event tells of
    counted = queued_rows[(step >= 1) & (step <= advances) & (queued_rows[:, 2] >= 1)]
    delay_ms = (counted[:, 4] - counted[:, 3]) * 1000
    heard = np.unique(counted[:, 0] - counted[:, 2])
    per_advance = []
    for k in heard:
        delays = delay_ms[(counted[:, 0] - counted[:, 2]) == k]
        per_advance.append({"advance": int(k), "events": len(delays), "p50_ms": float(np.percentile(delays, 50)), "max_ms": float(delays.max())})
    health = [(sent - t_cancel, latency * 1000) for sent, latency, _ in poller.samples if t_cancel <= sent <= t_end]
    health_ms = [latency for _, latency in health]
    server_advances = users - queued_end
    wall = t_end - t_cancel
    cpu_s = cpu1 - cpu0
    return {
        "mode": mode,
        "users": users,
        "connected": connected,
        "lost_sockets": lost,
        "caught_up": sum(c[2] for c in caught),
        "window_s": wall,
        "advances_server": server_advances,
        "advances_heard": len(heard),
        "place_events": len(counted),
        "p50_ms": percentile(delay_ms, 50),
        "p99_ms": percentile(delay_ms, 99),
        "max_ms": float(delay_ms.max()) if len(delay_ms) else float("nan"),
        "lag_p99_ms": histogram_quantile(metrics0, metrics1, 0.99) * 1000,
        "lag_max_ms": window_max(metrics0, metrics1) * 1000,
        "lag_max_since_start_ms": metrics1.get("max", float("nan")) * 1000,
        "healthz_polls": len(health),
        "healthz_p50_ms": percentile(health_ms, 50),
        "healthz_p99_ms": percentile(health_ms, 99),
        "healthz_max_ms": max(health_ms) if health_ms else float("nan"),
        "healthz_idle_p50_ms": percentile(idle_health, 50),
        "cpu_s": cpu_s,
        "cpu_per_advance_ms": cpu_s / max(1, server_advances) * 1000,
        "idle_cpu_pct": idle_rate * 100,
        "cpu_above_idle_per_advance_ms": (cpu_s - idle_rate * wall) / max(1, server_advances) * 1000,
        "rss_mb": rss_end / 2**20,
        "rss_before_mb": rss_before / 2**20,
        "rss_connected_mb": rss_connected / 2**20,
        **admission,
        "store_bytes_per_job": (store_after - store_before) / users if mode == "embedded" else store_after / max(1, jobs),
        "body_bytes_per_job": body_bytes / max(1, jobs),
        "events_per_job": events / max(1, jobs),
        "jobs_in_store": jobs,
        "client_procs": procs,
        "client_cpu_s": [round(c[3], 2) for c in caught],
        "load_avg": load,
        "per_advance": per_advance,
        "healthz": health,
    }


@contextmanager
def sampled(server: Server, mode: str) -> Iterator[None]:
    """OLDPHOTO_BENCH_PYSPY=prefix: py-spy samples every thread of the web process through the idle phase and the
    drain window, into prefix.<mode>.json (Chrome trace format: stacks in time, to set beside OLDPHOTO_BENCH_LAGLOG)."""
    prefix = os.environ.get("OLDPHOTO_BENCH_PYSPY")
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not prefix:
        yield
        return
    command = [spy, "record", "--pid", str(server.ps.pid), "--threads", "--idle", "--nonblocking", "--rate", "250"]
    print(f"py-spy from {time.time():.3f}", flush=True)
    sampler = subprocess.Popen([*command, "--format", "chrometrace", "--output", f"{prefix}.{mode}.json"], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        sampler.send_signal(2)
        sampler.wait(30)


def _wait_caught_up(clients: Clients, deadline: float) -> list[tuple[Any, ...]]:
    """Each client process's ("caught_up", time, sockets caught up, CPU s); at the deadline the late ones are stopped."""
    answers: dict[int, tuple[Any, ...]] = {}
    stopped = False
    while len(answers) < len(clients.pipes):
        for i, pipe in enumerate(clients.pipes):
            if i not in answers and pipe.poll(0.05):
                answer = pipe.recv()
                if answer[0] == "error":
                    raise RuntimeError(f"client process failed: {answer[1]}")
                answers[i] = answer
        if not stopped and time.time() > deadline:
            clients.send_all("stop")
            stopped = True
        if time.time() > deadline + 120:
            raise TimeoutError("client processes did not answer")
    return [answers[i] for i in range(len(clients.pipes))]


# -- the report ---------------------------------------------------------------------------------------------------

HEADERS = [
    "mode",
    "users",
    "advances: server / heard",
    "place events",
    "place delay p50 ms",
    "p99 ms",
    "max ms",
    "loop lag p99 / max ms (/metrics, max: bucket bound)",
    "/healthz p50 / p99 / max ms",
    "web CPU ms per advance: all / above idle",
    "web RSS MB",
    "admission jobs/s: first 100 / last 100",
    "POST p50 / p99 ms",
    "durable bytes per job: store / event bodies",
    "load avg",
]


def ratios(rows: list[dict[str, Any]]) -> str:
    """Previous design / this one, for each mode and N run both ways (above 1: this one is better, but admission)."""
    lines = []
    for after in (r for r in rows if r["design"] == "after"):
        before = next((r for r in rows if r["design"] == "before" and r["mode"] == after["mode"] and r["users"] == after["users"]), None)
        if before is None:
            continue
        parts = [
            f"{name} {before[key] / after[key]:.3g}x" if after[key] else f"{name} -"
            for name, key in (
                ("place delay p99", "p99_ms"),
                ("/healthz p99", "healthz_p99_ms"),
                ("web CPU per advance", "cpu_above_idle_per_advance_ms"),
                ("durable bytes per job", "body_bytes_per_job"),
            )
        ]
        speed = after["last_jobs_s"] / before["last_jobs_s"] if before["last_jobs_s"] else math.nan
        lines.append(f"{after['mode']} {after['users']}: before/after " + ", ".join(parts) + f"; admission (last 100) after/before {speed:.3g}x")
    return "\n".join(lines)


def report(rows: list[dict[str, Any]]) -> str:
    def pair(*values: float) -> str:
        return " / ".join("-" if math.isnan(v) else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}" for v in values)

    return table(
        HEADERS,
        [
            [
                r["mode"] + ("" if r.get("design", "after") == "after" else " (before)"),
                r["users"],
                f"{r['advances_server']} / {r['advances_heard']}",
                r["place_events"],
                r["p50_ms"],
                r["p99_ms"],
                r["max_ms"],
                pair(r["lag_p99_ms"], r["lag_max_ms"]),
                pair(r["healthz_p50_ms"], r["healthz_p99_ms"], r["healthz_max_ms"]),
                pair(r["cpu_per_advance_ms"], r["cpu_above_idle_per_advance_ms"]),
                r["rss_mb"],
                pair(r["first_jobs_s"], r["last_jobs_s"]),
                pair(r["post_p50_ms"], r["post_p99_ms"]),
                pair(r["store_bytes_per_job"], r["body_bytes_per_job"]),
                r["load_avg"],
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1000, 10000], help="waiting users, one job and one socket each")
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both")
    parser.add_argument("--advances", type=int, default=30, help="the drain window: this many advances of the queue ...")
    parser.add_argument("--window-s", type=float, default=300.0, help="... or this many seconds, whichever comes first")
    parser.add_argument("--job-seconds", type=float, default=0.3, help="length of each user's Pause job")
    parser.add_argument("--idle-s", type=float, default=3.0, help="the idle baseline before the window (web CPU, /healthz)")
    parser.add_argument("--procs", type=int, help=f"client processes (default: one per {SOCKETS_PER_PROC} sockets, at most 4)")
    parser.add_argument("--in-flight", type=int, default=32, help="admission: POSTs in flight")
    parser.add_argument("--log-level", default="info", help="the server's --log-level (oldphoto serve's default: info)")
    parser.add_argument("--dump", type=Path, help="write every measurement, with per-advance delays and /healthz samples, to this JSON file")
    parser.add_argument("--quick", action="store_true", help="tiny run for the smoke test: 40 users, 5 advances, embedded unless --mode")
    parser.add_argument(
        "--before",
        type=Path,
        help="also run the previous design from this source folder (e.g. `git worktree add /tmp/before a1d730e`, then "
        "/tmp/before/src), before each run of this one, and print their ratios",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.advances, args.window_s, args.job_seconds, args.idle_s = [40], 5, 30.0, 0.2, 1.0
        if "--mode" not in (argv if argv is not None else sys.argv[1:]):
            args.mode = "embedded"
    modes = list(MODES) if args.mode == "both" else [args.mode]
    raise_fd_limit()
    print_header("Queue storm: N waiting users, each watching their own job's place while the queue drains")
    rows = []
    designs = [("before", str(args.before.resolve())), ("after", "")] if args.before else [("after", "")]
    for n in args.users:
        for mode in modes:
            for design, source in designs:
                os.environ["OLDPHOTO_BENCH_SRC"] = source  # the nodes' PYTHONPATH (empty: this checkout)
                procs = args.procs or max(1, min(4, math.ceil(n / SOCKETS_PER_PROC)))
                result = measure(
                    mode, n, args.advances, args.window_s, args.job_seconds, min(procs, n), args.in_flight, args.log_level, args.idle_s
                )
                result["design"] = design
                print(json.dumps({k: v for k, v in result.items() if k not in ("per_advance", "healthz")}), flush=True)
                rows.append(result)
    if args.dump:
        args.dump.write_text(json.dumps(rows, indent=1))
    out = report(rows)
    if args.before:
        out += "\n\n" + ratios(rows)
    print()
    print(out)
    print()
    for r in rows:
        print(
            f"{r['mode']} {r['users']}: {r['connected']} sockets ({r['lost_sockets']} lost, {r['caught_up']} caught up) in "
            f"{r['client_procs']} client processes, client CPU {r['client_cpu_s']} s in a {r['window_s']:.1f} s window; "
            f"web CPU {r['cpu_s']:.2f} s (idle: {r['idle_cpu_pct']:.1f} % of a core, /healthz p50 {r['healthz_idle_p50_ms']:.2g} ms); "
            f"{r['events_per_job']:.1f} events per job in the store; web RSS "
            f"{r['rss_before_mb']:.0f} MB before admission, {r['rss_connected_mb']:.0f} MB connected"
        )
    return out


if __name__ == "__main__":
    main()
