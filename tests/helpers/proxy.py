"""Debian's nginx with deploy/nginx.conf in front of web nodes started by a test (docs/deploy.md).

The site file is rendered as an operator would (TLS included, with a throwaway self-signed certificate); only its
ports, paths and read timeout differ, and `edit` may change the rendered text (a site that drops the WebSocket
upgrade, say) as a misconfigured proxy would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.sync.client import ClientConnection, connect

from oldphoto.deploy import TEMPLATE, render, site_values
from oldphoto.settings import Settings
from tests.helpers.server import ServerProcess, free_port

NGINX = Path("/usr/sbin/nginx")
SECRET = "deploy-test-secret-0123456789-0123456789-abcdef"
READ_TIMEOUT_S = 3
FINAL = {"complete", "error", "cancelled"}
APP_ENV = {
    "OLDPHOTO_TEST_NODES": "1",
    "OLDPHOTO_USER_CONCURRENCY": "5",
    "OLDPHOTO_FORWARDED_ALLOW_IPS": "127.0.0.1",  # nginx's address as the app sees it
    "OLDPHOTO_WS_PING_INTERVAL_S": "1",
    "OLDPHOTO_SSE_HEARTBEAT_S": "1",
}


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


@dataclass
class Proxy:
    https_port: int
    http_port: int
    app: ServerProcess

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def http(self, user: str | None = None, address: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token(user)}"} if user else {}
        transport = httpx.HTTPTransport(verify=False, local_address=address) if address else httpx.HTTPTransport(verify=False)
        return httpx.Client(base_url=self.url, headers=headers, transport=transport, timeout=60)

    def socket(self, user: str, query: str) -> ClientConnection:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return connect(
            f"wss://localhost:{self.https_port}/ws/progress{query}", subprotocols=["bearer", token(user)], ssl=context, open_timeout=10
        )


def nginx_binary() -> Path:
    found = NGINX if NGINX.exists() else Path(shutil.which("nginx") or "/nonexistent")
    if not found.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is missing: CI must run the proxy tests (apt-get install nginx)", pytrace=False)
        pytest.skip("nginx is not installed")
    return found


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def main_config(prefix: Path, site: Path) -> str:
    """What /etc/nginx/nginx.conf gives a site file, with every path of nginx's own under `prefix` (not root)."""
    temps = "\n".join(f"    {name}_temp_path {prefix / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # Which web node answered each request: the scale-out test reads it.
    upstream_log = f"    log_format upstream '$upstream_addr $request';\n    access_log {prefix / 'upstream.log'} upstream;"
    mime = "    include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
    return f"events {{}}\nhttp {{\n{mime}\n{upstream_log}\n    access_log {prefix / 'access.log'};\n{temps}\n    include {site};\n}}\n"


@contextmanager
def running_nginx(prefix: Path, upstreams: list[str], edit: Callable[[str], str] = lambda site: site) -> Iterator[tuple[int, int]]:
    """nginx with the rendered site file (changed by `edit`) in front of `upstreams`; its (https, http) ports."""
    binary = nginx_binary()
    cert, key = self_signed(prefix)
    https_port, http_port = free_port(), free_port()
    values = site_values(
        Settings(),
        server_name="localhost",
        upstreams=upstreams,
        certificate=str(cert),
        certificate_key=str(key),
        http_port=http_port,
        https_port=https_port,
        read_timeout_s=READ_TIMEOUT_S,
    )
    site = prefix / "oldphoto.conf"
    site.write_text(edit(render(TEMPLATE.read_text(encoding="utf-8"), values)))
    (prefix / "nginx.conf").write_text(main_config(prefix, site))
    globals_ = f"daemon off; master_process on; worker_processes 1; pid {prefix / 'nginx.pid'}; error_log {prefix / 'error.log'} info;"
    if os.geteuid() == 0:  # nginx's workers would drop to nobody, who cannot write this test's temp dirs
        globals_ += " user root;"
    process = subprocess.Popen([str(binary), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", globals_])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start:\n{(prefix / 'error.log').read_text(errors='replace')}") from None
                time.sleep(0.1)
        yield https_port, http_port
    finally:
        process.terminate()
        process.wait(10)


def read_socket(ws: ClientConnection, timeout: float = 60) -> list[tuple[float, dict[str, Any]]]:
    """Every event until the final one, each with the time it came."""
    events = []
    while True:
        event = json.loads(ws.recv(timeout=timeout))
        events.append((time.monotonic(), event))
        if event["type"] in FINAL:
            return events


def read_stream(http: httpx.Client, job_id: str) -> list[tuple[float, dict[str, Any]]]:
    events = []
    with http.stream("GET", f"/api/jobs/{job_id}/events") as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                events.append((time.monotonic(), event))
                if event["type"] in FINAL:
                    return events
    raise AssertionError(f"the stream ended before the job did: {events[-3:]}")


def gap_free(events: list[tuple[float, dict[str, Any]]]) -> None:
    seqs = [e["seq"] for _, e in events if not e.get("live")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] == 1, seqs
    assert events[-1][1]["type"] == "complete", events[-1]
