"""A real `oldphoto serve` process on a free loopback port, for tests that talk to it over real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def token(self) -> str:
        return httpx.post(f"{self.url}/api/session").json()["token"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def workers_ready(health: dict[str, Any]) -> bool:
    return health.get("workers_ready", 0) >= 1


def start_server(
    data_dir: Path,
    env: dict[str, str] | None = None,
    port: int | None = None,
    ready_timeout: float = 60,
    ready: Callable[[dict[str, Any]], bool] = workers_ready,
) -> ServerProcess:
    """`ready`: what /healthz must say first (a scale-out web node has no workers of its own: any answer will do)."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}-{time.monotonic_ns()}.log"
    # A short drain (docs/deploy.md, "Stopping a node"): a test's server stops in seconds even with a job running.
    defaults = {"OLDPHOTO_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "OLDPHOTO_DRAIN_GRACE_S": "3"}
    full_env = {**os.environ, **defaults, **(env or {})}
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [sys.executable, "-m", "oldphoto", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(process, port, data_dir, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if ready(httpx.get(f"{server.url}/healthz", timeout=1).json()):
                return server
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not become ready:\n{server.log()}")


@contextmanager
def running_server(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    server = start_server(data_dir, env)
    try:
        yield server
    finally:
        server.stop()


def run_async(coroutine: Any) -> Any:
    """Run a coroutine to its end on a fresh loop in its own thread, whatever loop this thread may hold."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
