"""A client that goes away leaves nothing behind: no task, no subscription, no memory."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import websockets

from tests.helpers.server import ServerProcess, run_async, running_server
from tests.server.conftest import Client, png_bytes

CYCLES = 2000


def metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return float(re.search(rf"^{name} (\S+)$", text, re.MULTILINE).group(1))


async def churn(server: ServerProcess, token: str, job_id: str, cycles: int, parallel: int = 10) -> None:
    async def one_client(n: int) -> None:
        for _ in range(n):
            async with websockets.connect(f"{server.ws_url}/ws/progress", subprotocols=["bearer", token]) as ws:
                await ws.send(json.dumps({"type": "subscribe", "job_id": job_id, "after_seq": 0}))
                await ws.recv()

    await asyncio.gather(*(one_client(cycles // parallel) for _ in range(parallel)))


SWEEP_S = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose garbage collector sweeps often: the cycles a closed connection leaves are collected at the
    next sweep (server/gcpolicy.py), so the baseline is measured after one."""
    with running_server(tmp_path_factory.mktemp("hygiene"), {"OLDPHOTO_GC_SWEEP_EVERY_S": str(SWEEP_S)}) as process:
        yield process


@pytest.mark.slow
def test_thousands_of_departed_clients_leave_the_server_at_its_baseline(server: ServerProcess) -> None:
    client = Client(server)
    job = client.submit(png_bytes(32, 32), steps="sharpen")["job_id"]
    client.follow(job)
    process = psutil.Process(server.process.pid)
    run_async(churn(server, client.token, job, 200))  # warm up allocator pools and caches
    time.sleep(SWEEP_S + 1)
    baseline_rss = process.memory_info().rss
    baseline_tasks = metric(server, "oldphoto_asyncio_tasks")
    run_async(churn(server, client.token, job, CYCLES))
    for _ in range(50):
        if metric(server, "oldphoto_ws_connections") == 0:
            break
        time.sleep(0.1)
    assert metric(server, "oldphoto_ws_connections") == 0
    assert metric(server, "oldphoto_subscriptions") == 0
    assert metric(server, "oldphoto_asyncio_tasks") <= baseline_tasks
    time.sleep(SWEEP_S + 1)  # what a closed connection left in reference cycles goes at the next sweep
    grown = (process.memory_info().rss - baseline_rss) / 1e6
    assert grown < 8, f"the server grew by {grown:.1f} MB over {CYCLES} connections"


@pytest.mark.slow
def test_departed_clients_leave_nothing_when_the_collector_freezes_often(tmp_path: Path) -> None:
    """server/gcpolicy.py freezes what lives past its interval: a closed connection's cycles must not stay behind."""
    with running_server(tmp_path, {"OLDPHOTO_GC_FREEZE_EVERY_S": "0.2", "OLDPHOTO_GC_SWEEP_EVERY_S": "3"}) as frozen:
        client = Client(frozen)
        job = client.submit(png_bytes(32, 32), steps="sharpen")["job_id"]
        client.follow(job)
        run_async(churn(frozen, client.token, job, 200))
        time.sleep(3.5)  # past a sweep: what is frozen now is what lives
        baseline = metric(frozen, "oldphoto_gc_objects_at_sweep")
        cycles = CYCLES // 2  # enough: a leak shows as a hundred objects per connection, ten times the bound
        run_async(churn(frozen, client.token, job, cycles))
        time.sleep(3.5)  # a sweep collects any cycle that froze with a connection
        kept = metric(frozen, "oldphoto_gc_objects_at_sweep") - baseline
        # A connection's objects number in the hundreds: leaking them would keep a hundred thousand here.
        assert kept < 10 * cycles, f"{kept:.0f} more objects live after {cycles} connections came and went"
