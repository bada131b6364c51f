"""Shared pieces of the service benchmarks: the machine, a real `oldphoto serve` process, tokens, jobs, lean clients.

The clients here are deliberately lean (a raw WebSocket protocol and a raw keep-alive HTTP/1.1 poller on asyncio,
uvloop when present), so that on a small machine the client side costs as little CPU as it can and the numbers
are about the server. Every connection goes to 127.0.0.1; every loop is bounded by a count or a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing as mp
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import jwt  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

HOST = "127.0.0.1"
PHOTOS = REPO.parent / "shared" / "photos"
FINAL = frozenset({"complete", "error", "cancelled"})
CONTEXT = mp.get_context("spawn")
# One model cache for every benchmark server and direct run, kept between runs (ONNX exports are made once).
MODELS_DIR = Path(tempfile.gettempdir()) / "oldphoto-bench" / "models"


# -- the machine and the report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        torch_version = "absent"
    import uvicorn
    import websockets

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch_version,
        "uvicorn": uvicorn.__version__,
        "websockets": websockets.__version__,
        "load_avg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def print_header(title: str) -> dict[str, Any]:
    info = machine()
    print(f"# {title}")
    print()
    python = os.path.relpath(sys.executable) if Path(sys.executable).resolve().is_relative_to(Path.cwd().resolve()) else sys.executable
    print(f"command: {' '.join(shlex.quote(a) for a in [python, *sys.argv])}")
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB; python {info['python']}, torch {info['torch']}, "
        f"uvicorn {info['uvicorn']}, websockets {info['websockets']}"
    )
    print(f"load average at start: {info['load_avg']}")
    print(flush=True)
    return info


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [[_cell(v) for v in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def percentile(values: Sequence[float], q: float) -> float:
    if len(values) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def raise_fd_limit(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def new_loop_policy() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass


# -- the server -------------------------------------------------------------------------------------------------

# `oldphoto serve` exactly, with optional changes made in the child before it starts: the per-user cap on
# progress connections (16, SPEC) lifted, for the fan-out of ONE job to thousands of sockets (a job can only be
# followed by its owner, so without this at most 16 sockets can follow one job); and, for comparison with the
# design before prepared frames, every event sent through ASGI. Nothing else is touched.
_LAUNCH = """
import sys
if {lift!r}:
    import oldphoto.server.hub as hub
    hub.MAX_CONNECTIONS_PER_USER = 10**9
if {asgi_only!r}:  # the previous design, for comparison: every event through the ASGI send, no prepared frames
    import oldphoto.server.ws as ws
    ws.frame_writer = lambda scope: None
from oldphoto.cli import main
gclog = {gclog!r}
if gclog:  # OLDPHOTO_BENCH_GCLOG=file: log every garbage collection that takes over 10 ms (time, generation, ms)
    import gc, time
    started = [0.0]
    def _gc(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        elif (took := time.perf_counter() - started[0]) > 0.01:
            with open(gclog, "a") as f:
                f.write(f"{{time.time():.3f}} gen{{info['generation']}} {{took * 1000:.1f}} ms collected={{info['collected']}}\\n")
    gc.callbacks.append(_gc)
laglog = {laglog!r}
if laglog:  # OLDPHOTO_BENCH_LAGLOG=file: log every event-loop lag the probe sees over 10 ms (time it was seen, ms)
    import time
    import oldphoto.server.looplag as looplag
    _observe = looplag.LoopLag.observe
    _last = [time.perf_counter(), time.thread_time(), time.process_time()]
    def _logged(self, lag_s):
        # With the loop thread's own CPU time and the whole process's since the previous probe: a lag with little
        # loop CPU while the process kept a core busy was spent waiting for the GIL; with neither, for a core.
        wall, cpu, proc = time.perf_counter(), time.thread_time(), time.process_time()
        if lag_s > 0.01:
            with open(laglog, "a") as f:
                f.write(f"{{time.time():.3f}} lag {{lag_s * 1000:.1f}} ms; CPU of the loop thread {{(cpu - _last[1]) * 1000:.1f}} ms, of the process {{(proc - _last[2]) * 1000:.1f}} ms, in {{(wall - _last[0]) * 1000:.1f}} ms\\n")
        _last[:] = [wall, cpu, proc]
        _observe(self, lag_s)
    looplag.LoopLag.observe = _logged
if {freeze!r}:  # OLDPHOTO_BENCH_GCFREEZE=1 (experiment): import the server, then move every object so far out of the GC's reach
    import gc
    import oldphoto.commands.serve, oldphoto.server.app  # noqa: F401
    gc.collect()
    gc.freeze()
profile = {profile!r}
if profile:  # OLDPHOTO_BENCH_PROFILE=prefix: cProfile the web process (slower; for finding where time goes)
    import cProfile
    import signal
    signal.signal(signal.SIGTERM, lambda *_: None)  # uvicorn re-raises SIGTERM after its shutdown; let the dump run
    profiler = cProfile.Profile()
    try:
        profiler.runcall(main, sys.argv[1:])
    finally:
        profiler.dump_stats(profile)
    sys.exit(0)
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    secret: str
    log_path: Path
    _log: Any = field(repr=False, default=None)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the web process only, not its worker processes."""
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def token(self, user: str, ttl_s: int = 3600) -> str:
        now = int(time.time())
        return jwt.encode({"sub": user, "iat": now, "exp": now + ttl_s}, self.secret, algorithm="HS256")

    def metric(self, name: str) -> float:
        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting; `stop()` later waits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if os.environ.get("OLDPHOTO_BENCH_KEEP") != "1":  # OLDPHOTO_BENCH_KEEP=1 keeps the data dir and server log
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    data_dir: Path,
    env: dict[str, str] | None = None,
    *,
    lift_connection_cap: bool = False,
    asgi_only: bool = False,
    log_level: str = "info",
    ready_timeout: float = 90,
) -> Server:
    """A real `oldphoto serve` on a free loopback port, signing tokens with a key this benchmark knows."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    log_path = data_dir / f"server-{port}.log"
    full_env = {
        **os.environ,
        "OLDPHOTO_DATA_DIR": str(data_dir),
        "OLDPHOTO_JWT_SECRET": secret,
        "OLDPHOTO_MODELS_DIR": str(data_dir / "models"),
        "PYTHONUNBUFFERED": "1",
        # OLDPHOTO_BENCH_SRC: run the server from another copy of src/ (to measure a proposed change in a scratch copy).
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("OLDPHOTO_BENCH_SRC") or str(REPO / "src"), os.environ.get("PYTHONPATH")])),
        **(env or {}),
    }
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed in stop()
    argv = ["serve", "--host", HOST, "--port", str(port), "--log-level", log_level]
    process = subprocess.Popen(
        [sys.executable, "-c", _launch_code(lift_connection_cap, data_dir, asgi_only), *argv],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_child_fd_limit,
    )
    server = Server(process, port, data_dir, secret, log_path, log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).json().get("workers", 0) >= 1:
                return server
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server did not become ready:\n{server.log()}")


def _launch_code(lift_connection_cap: bool, data_dir: Path, asgi_only: bool = False) -> str:
    return _LAUNCH.format(
        lift=lift_connection_cap,
        asgi_only=asgi_only,
        profile=_profile_path(data_dir),
        gclog=os.environ.get("OLDPHOTO_BENCH_GCLOG", ""),
        laglog=os.environ.get("OLDPHOTO_BENCH_LAGLOG", ""),
        freeze=os.environ.get("OLDPHOTO_BENCH_GCFREEZE") == "1",
    )


def _profile_path(data_dir: Path) -> str:
    """OLDPHOTO_BENCH_PROFILE=prefix: each server writes prefix.<data dir name>.prof (several servers per benchmark)."""
    prefix = os.environ.get("OLDPHOTO_BENCH_PROFILE", "")
    return f"{prefix}.{data_dir.name}.prof" if prefix else ""


def _child_fd_limit() -> None:
    raise_fd_limit()


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"oldphoto-bench-{prefix}-"))


# -- jobs -------------------------------------------------------------------------------------------------------


def pause_workflow(seconds: float) -> str:
    """The test-only `Pause` node (OLDPHOTO_TEST_NODES=1): sleeps in 50 ms steps, reporting progress, honouring cancel."""
    return json.dumps(
        {
            "1": {"class_type": "LoadImage", "inputs": {}},
            "2": {"class_type": "Pause", "inputs": {"image": ["1", 0], "seconds": seconds}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        }
    )


def png_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    from tests.helpers.images import png_bytes as generated

    return generated(width, height, seed)


def submit(
    server: Server, token: str, image: bytes, *, workflow: str | None = None, steps: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """POST /api/jobs. `source` picks the loopback address the request comes from (127.0.0.x; the per-address
    limit of 60 jobs a minute counts per address)."""
    transport = httpx.HTTPTransport(local_address=source) if source else None
    data = {k: v for k, v in {"workflow": workflow, "steps": steps}.items() if v is not None}
    with httpx.Client(transport=transport, timeout=60) as client:
        response = client.post(
            f"{server.url}/api/jobs", headers={"Authorization": f"Bearer {token}"}, files={"file": ("photo.png", image)}, data=data
        )
    if response.status_code != 202:
        raise RuntimeError(f"submit failed: {response.status_code} {response.text}")
    return response.json()


def cancel(server: Server, token: str, job_id: str) -> int:
    return httpx.delete(f"{server.url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def job_status(server: Server, token: str, job_id: str) -> dict[str, Any]:
    return httpx.get(f"{server.url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()


def wait_status(server: Server, token: str, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = job_status(server, token, job_id)
        if status["status"] in statuses or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def tiny_checkpoint(path: Path | None = None) -> Path:
    """The real DDColor tiny architecture with seeded random weights (same compute as the real one), cached."""
    return _random_checkpoint("tiny", path)


def large_checkpoint(path: Path | None = None) -> Path:
    """The large DDColor architecture (ConvNeXt-L) with seeded random weights, cached (about 900 MB, a minute to make)."""
    return _random_checkpoint("large", path)


def _random_checkpoint(size: str, path: Path | None) -> Path:
    from tests.helpers import checkpoints

    path = path or Path(tempfile.gettempdir()) / "oldphoto-bench" / f"ddcolor_{size}_random.pth"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        getattr(checkpoints, f"write_{size}_checkpoint")(tmp)
        tmp.replace(path)
    return path


def photo_bytes(name: str = "detroit-circa-1915.jpg") -> tuple[bytes, str]:
    """A real old photo from ../shared/photos, or a generated 1000x553 grey image when it is absent."""
    path = PHOTOS / name
    if path.is_file():
        return path.read_bytes(), name
    return png_bytes(1000, 553), "generated 1000x553 grey PNG (shared photo absent)"


# -- a lean WebSocket client (asyncio protocol, no library on the receive path) ----------------------------------


class RawWebSocket(asyncio.Protocol):
    """Just enough RFC 6455 for a progress client: handshake, unmasked text frames in, masked frames out.

    Each text frame is stored with the time its bytes reached this process (`time.time()` in data_received), the
    earliest moment a client can know of it.
    """

    def __init__(self, path: str, token: str, port: int, on_text: Callable[[float, bytes], None] | None = None) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: bearer, {token}\r\n\r\n"
        ).encode()
        self.on_text = on_text
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.messages: list[tuple[float, bytes]] = []
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = int(self.buffer[:end].split(b" ", 2)[1])
            del self.buffer[: end + 4]
            if status != 101:
                self._finish(status)
                return
            self.upgraded = True
            if not self.opened.done():
                self.opened.set_result(status)
        self._frames(now)

    def _frames(self, now: float) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            opcode, length, start = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, start = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + length:
                return
            payload = bytes(buf[start : start + length])
            del buf[: start + length]
            if opcode == 1:
                if self.on_text is not None:
                    self.on_text(now, payload)
                else:
                    self.messages.append((now, payload))
            elif opcode == 9:
                self._send(0xA, payload)
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._send(0x8, payload[:2])
                self._finish(code)
                return

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")) + mask
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(header + masked)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()

    def _finish(self, code: int) -> None:
        self.close_code = code
        if not self.opened.done():
            self.opened.set_result(code)
        if not self.closed.done():
            self.closed.set_result(code)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(0)
        if not self.closed.done():
            self.closed.set_result(self.close_code or 1006)


async def open_ws(port: int, path: str, token: str, on_text: Callable[[float, bytes], None] | None = None, timeout: float = 30) -> RawWebSocket:
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(loop.create_connection(lambda: RawWebSocket(path, token, port, on_text), HOST, port), timeout)
    status = await asyncio.wait_for(protocol.opened, timeout)
    if status != 101:
        raise ConnectionError(f"WebSocket handshake answered {status}")
    return protocol


# -- a lean keep-alive HTTP/1.1 client --------------------------------------------------------------------------


class RawHttp:
    """One keep-alive connection sending GETs one at a time (what a polling browser tab does)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def get(self, path: str) -> tuple[int, bytes]:
        """One GET; if the server closed the idle keep-alive connection meanwhile, reconnect once and resend."""
        try:
            return await self._get(path)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.reconnects += 1
            self.close()
            await self.connect()
            return await self._get(path)

    async def _get(self, path: str) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nAuthorization: Bearer {self.token}\r\nAccept: application/json\r\n\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await self.reader.readexactly(length)
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# -- client processes -------------------------------------------------------------------------------------------


class Clients:
    """Client processes driven in two steps: set up (connect), then go (measure). Bounded by timeouts."""

    def __init__(self, target: Callable[..., None], arg_tuples: list[tuple[Any, ...]]) -> None:
        self.pipes = []
        self.processes = []
        for args in arg_tuples:
            parent, child = CONTEXT.Pipe()
            process = CONTEXT.Process(target=target, args=(child, *args), daemon=True)
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    def wait_all(self, timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        answers = []
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            left = max(0.0, deadline - time.monotonic())
            if not pipe.poll(left):
                raise TimeoutError(f"client process {process.pid} did not answer within {timeout:.0f} s")
            try:
                answer = pipe.recv()
            except EOFError:
                process.join(5)
                raise RuntimeError(f"client process {process.pid} exited with code {process.exitcode}") from None
            if isinstance(answer, tuple) and answer and answer[0] == "error":
                raise RuntimeError(f"client process failed: {answer[1]}")
            answers.append(answer)
        return answers

    def send_all(self, message: Any) -> None:
        for pipe in self.pipes:
            pipe.send(message)

    def close(self) -> None:
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(2)

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def child_main(conn: Any, coro_factory: Callable[[], Any]) -> None:
    """Body of a client process: raise its fd limit, run the coroutine on uvloop, report an exception as a message."""
    raise_fd_limit()
    new_loop_policy()
    try:
        asyncio.run(coro_factory())
    except Exception as exc:  # reported to the parent, which stops the benchmark with it
        import traceback

        conn.send(("error", "".join(traceback.format_exception(exc))))


async def recv_pipe(conn: Any, timeout: float) -> Any:
    """Wait for the parent's next message without blocking this process's event loop."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while not conn.poll():
        if time.monotonic() > deadline:
            raise TimeoutError("the parent did not answer")
        await asyncio.sleep(0.02)
    return await loop.run_in_executor(None, conn.recv)
