from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.helpers.images import png_bytes  # noqa: F401 - re-exported for the server tests
from tests.helpers.server import ServerProcess, start_server

FINAL = {"complete", "error", "cancelled"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, shared_models_dir: Path) -> Iterator[ServerProcess]:
    """A real server whose colorize model is a real DDColor checkpoint with random weights."""
    process = start_server(
        tmp_path_factory.mktemp("server"),
        {"OLDPHOTO_MODEL": str(tiny_checkpoint), "OLDPHOTO_USER_CONCURRENCY": "20", "OLDPHOTO_MODELS_DIR": str(shared_models_dir)},
    )
    yield process
    process.stop()


class Client:
    """One user of a real server: a session token, REST calls and WebSockets."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.token = server.token()
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def submit(self, image: bytes, filename: str = "photo.png", **fields: str) -> dict[str, Any]:
        response = self.http.post("/api/jobs", files={"file": (filename, image)}, data=fields)
        assert response.status_code == 202, response.text
        return response.json()

    def socket(self, query: str = "") -> ClientConnection:
        return connect(f"{self.server.ws_url}/ws/progress{query}", subprotocols=["bearer", self.token], open_timeout=10)

    def follow(self, job_id: str, after_seq: int = 0, lang: str = "en", timeout: float = 120) -> list[dict[str, Any]]:
        """Every event of a job until its final one."""
        with self.socket(f"?job_id={job_id}&after_seq={after_seq}&lang={lang}") as ws:
            return read_until_final(ws, timeout)


def recorded(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the job's log, without live ones (a changed queue place repeats the last recorded seq)."""
    return [e for e in events if not e.get("live")]


def read_until_final(ws: ClientConnection, timeout: float = 120) -> list[dict[str, Any]]:
    events = []
    while True:
        event = json.loads(ws.recv(timeout=timeout))
        events.append(event)
        if event["type"] in FINAL:
            return events


@pytest.fixture
def client(server: ServerProcess) -> Client:
    return Client(server)
