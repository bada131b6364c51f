"""At shutdown a web node ends its progress streams at once (server/hub.py `close_all`, server/sse.py): WebSockets
close with 1001, event streams end with a jittered `retry:`, so clients reconnect (to another node, behind a proxy)
without waiting out uvicorn's graceful timeout (5 s), and the node stops in well under it."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from oldphoto.server.hub import GOING_AWAY, Hub
from oldphoto.server.sse import going_away
from tests.helpers.server import start_server
from tests.jobs.conftest import TEST_ENV, pause_workflow
from tests.server.conftest import Client, png_bytes


@pytest.mark.slow
def test_sigterm_ends_open_event_streams_at_once_and_the_node_stops_before_the_graceful_timeout(tmp_path: Path) -> None:
    # No drain (docs/deploy.md, "Stopping a node"): this is about what the stop does once the server does stop.
    server = start_server(tmp_path, {**TEST_ENV, "OLDPHOTO_DRAIN_GRACE_S": "0"})
    client = Client(server)
    job = client.submit(png_bytes(32, 32), workflow=pause_workflow(20))["job_id"]
    lines: list[str] = []
    ended: list[float] = []
    opened = threading.Event()

    def read() -> None:
        headers = {"Authorization": f"Bearer {client.token}"}
        with httpx.stream("GET", f"{server.url}/api/jobs/{job}/events", headers=headers, timeout=30) as response:
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith("id: "):
                    opened.set()
        ended.append(time.monotonic())

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        assert opened.wait(20), lines
        time.sleep(0.3)  # all three streams open
        began = time.monotonic()
        code = server.stop(signal.SIGTERM, timeout=15)
        took = time.monotonic() - began
        for reader in readers:
            reader.join(10)
    finally:
        server.stop(signal.SIGKILL)
    # Each stream ended cleanly (no cut chunk: iter_lines raised nothing) and soon, saying when to come back.
    assert len(ended) == 3 and max(ended) - began < 2, [round(t - began, 2) for t in ended]
    assert lines.count(": going away") == 3, lines[-6:]
    retries = [int(line.removeprefix("retry: ")) for line in lines if line.startswith("retry: ") and line != "retry: 2000"]
    assert len(retries) == 3 and all(1000 <= r <= 3000 for r in retries), retries
    # Before, the streams kept the node up until uvicorn cancelled them after its graceful timeout (5 s).
    assert took < 3 and code in (0, -signal.SIGTERM), f"exit {code} after {took:.1f} s"
    assert "timeout graceful shutdown exceeded" not in server.log()


def test_a_stream_or_socket_added_while_the_hub_closes_is_closed_too() -> None:
    class Closable:
        def __init__(self) -> None:
            self.closed_with: int | None = None

        async def close(self, code: int, reason: str = "") -> None:
            self.closed_with = code

    async def scenario() -> tuple[Closable, Closable, Closable]:
        hub = Hub()
        early, late_socket, late_stream = Closable(), Closable(), Closable()
        hub.add_stream(early)
        await hub.close_all()
        hub.add(late_socket)
        hub.add_stream(late_stream)
        await asyncio.sleep(0)
        return early, late_socket, late_stream

    assert [c.closed_with for c in asyncio.run(scenario())] == [GOING_AWAY] * 3


def test_the_last_words_of_a_stream_jitter_its_reconnect_delay() -> None:
    delays = {int(going_away().split("retry: ")[1]) for _ in range(200)}
    assert min(delays) >= 1000 and max(delays) <= 3000 and len(delays) > 50
