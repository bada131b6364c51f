"""The ComfyUI backend when things fail (issue 15, item 4; docs/comfyui.md, "Faults"): the connection to ComfyUI
drops and comes back, ComfyUI is killed mid-job, this service is restarted mid-job. In each, every client's log of
the job stays one sequence, without a lost or doubled event."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.comfy.conftest import start_comfy_server
from tests.comfy.test_backend import gap_free, slow_prompt, steps_prompt, upscale_prompt, wait_for
from tests.helpers.comfyui import ComfyProcess, start_comfyui
from tests.helpers.images import png_bytes
from tests.helpers.server import start_server
from tests.helpers.tcprelay import TcpRelay
from tests.server.conftest import Client, read_until_final, recorded

pytestmark = pytest.mark.slow


def until_counting(ws, node: str = "3") -> list[dict]:
    """Events until the node reports a step of its own (not an estimate): the prompt runs on ComfyUI."""
    return until(ws, lambda e: e.get("node") == node and e.get("step_progress") is not None and "estimated" not in e["message"])


def until(ws, done) -> list[dict]:
    seen = [json.loads(ws.recv(timeout=90))]
    while not done(seen[-1]):
        seen.append(json.loads(ws.recv(timeout=90)))
    return seen


def said_once(events: list[dict], message: str) -> None:
    assert sum(1 for e in recorded(events) if e.get("message") == message) == 1, [e.get("message") for e in events]


def test_the_connection_to_comfyui_drops_and_comes_back_and_no_event_is_lost_or_doubled(tmp_path: Path, comfyui: ComfyProcess) -> None:
    relay = TcpRelay(comfyui.port)
    server = start_comfy_server(tmp_path / "server", ComfyProcess(comfyui.process, relay.port, comfyui.base))
    try:
        client = Client(server)
        job = client.submit(png_bytes(1600, 1200), workflow=json.dumps(slow_prompt()))["job_id"]  # 12 tiles: outlasts the cut
        with client.socket(f"?job_id={job}") as ws:
            seen = until_counting(ws)
            cut_at = seen[-1]["seq"]
            relay.cut()  # the prompt goes on in ComfyUI; its events go nowhere
            time.sleep(2.0)
            relay.restore()
            seen += read_until_final(ws, 120)
        gap_free(seen)
        assert seen[-1]["type"] == "complete", seen[-1]
        said_once(seen, "ComfyUI is running ImageUpscaleWithModel (node 3)...")  # its repeat on reconnect is not news
        progress = [e["progress"] for e in recorded(seen)]
        assert progress == sorted(progress)
        assert relay.cuts == 1
        after = [e for e in recorded(seen) if e["seq"] > cut_at]
        assert any(e.get("node") == "3" and e.get("step_progress") for e in after), "it was still running when the link came back"
    finally:
        server.stop()
        relay.close()


def restart(comfy: ComfyProcess) -> ComfyProcess:
    comfy.stop(signal.SIGKILL)
    return start_comfyui(comfy.base, port=comfy.port)


def test_comfyui_killed_mid_job_runs_it_again_once_then_fails_it_as_unavailable(tmp_path: Path, comfyui: ComfyProcess) -> None:
    own = start_comfyui(comfyui.base)  # the same models; a process of this test's own to kill
    server = start_comfy_server(tmp_path / "server", own, OLDPHOTO_COMFYUI_LOST_S="3")
    try:
        client = Client(server)
        job = client.submit(png_bytes(1600, 1200), workflow=json.dumps(upscale_prompt()))["job_id"]
        with client.socket(f"?job_id={job}") as ws:
            seen = until_counting(ws)
            own = restart(own)  # killed mid-job: the new ComfyUI knows nothing of the prompt
            seen += until(ws, lambda e: e["type"] == "queued")  # back in line
            seen += until_counting(ws)  # sent again, running again
            again = [e for e in recorded(seen) if e["type"] == "queued"]  # a live place repeats its seq: not counted
            assert len(again) == 2, [e["type"] for e in seen]  # queued at admission, and again after the loss
            own = restart(own)  # and once more: the job has had its one retry
            seen += read_until_final(ws, 60)
        gap_free(seen)
        assert seen[-1]["type"] == "error" and seen[-1]["code"] == "backend_unavailable", seen[-1]
        progress = [e["progress"] for e in recorded(seen)[:-1]]  # an error event says 0 (SPEC)
        assert progress == sorted(progress)
        # A new job runs on the restarted instance.
        assert wait_for(client, client.submit(png_bytes(64, 64), workflow=json.dumps(upscale_prompt()))["job_id"], "succeeded")
    finally:
        server.stop()
        own.stop()


def test_this_service_restarted_mid_job_finds_its_prompt_again_and_finishes(tmp_path: Path, comfyui: ComfyProcess) -> None:
    server = start_comfy_server(tmp_path / "server", comfyui)
    client = Client(server)
    job = client.submit(png_bytes(1600, 1200), workflow=json.dumps(upscale_prompt()))["job_id"]
    with client.socket(f"?job_id={job}") as ws:
        seen = until_counting(ws)
    paces = server.data_dir / "comfyui-paces.json"
    deadline = time.monotonic() + 5
    while not paces.exists() and time.monotonic() < deadline:  # written at the next tick (0.5 s) after a node ends
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    assert "LoadImage" in paces.read_text()  # what it learned outlives it
    restarted = start_comfy_server(tmp_path / "server", comfyui, port=server.port)
    try:
        rest = client.follow(job, after_seq=seen[-1]["seq"])
        events = seen + rest
        gap_free(events)
        assert events[-1]["type"] == "complete", events[-1]
        assert client.http.get(f"/results/{job}.png").content.startswith(b"\x89PNG")
        assert client.http.get(f"/api/jobs/{job}").json()["status"] == "succeeded"
    finally:
        restarted.stop()


def test_a_prompt_past_the_job_time_limit_is_stopped_on_comfyui_and_fails_as_timeout(tmp_path: Path, comfyui: ComfyProcess) -> None:
    server = start_comfy_server(tmp_path / "server", comfyui, OLDPHOTO_JOB_TIMEOUT_S="2")
    try:
        client = Client(server)
        job = client.submit(png_bytes(1024, 768), workflow=json.dumps(slow_prompt()))["job_id"]
        events = client.follow(job, timeout=30)
        assert events[-1]["type"] == "error" and events[-1]["code"] == "timeout", events[-1]
        deadline = time.monotonic() + 10
        while (entry := httpx.get(f"{comfyui.url}/history/{job}").json().get(job)) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert entry is not None and entry["status"]["status_str"] == "error"  # interrupted there too, not left running
    finally:
        server.stop()


def test_a_job_on_an_instance_that_dies_runs_again_on_the_other(tmp_path: Path, comfyui: ComfyProcess) -> None:
    own = start_comfyui(comfyui.base)
    urls = f"{own.url},{comfyui.url}"
    server = start_server(
        tmp_path / "server",
        {"OLDPHOTO_COMFYUI_URL": urls, "OLDPHOTO_COMFYUI_SLOTS": "1", "OLDPHOTO_COMFYUI_LOST_S": "2"},
        ready=lambda health: len([b for b in health.get("backends", []) if b["connected"]]) == 2,
    )
    try:
        client = Client(server)
        # Two jobs: one on each instance.
        jobs = [client.submit(png_bytes(64, 64), workflow=json.dumps(steps_prompt(steps=20, seconds=0.25)))["job_id"] for _ in range(2)]
        with client.socket(f"?job_id={jobs[0]}") as ws:
            until_counting(ws, node="2")  # running: one job on each instance
            on_own = httpx.get(f"{own.url}/queue").json()["queue_running"]
            assert on_own, "a job runs on the instance about to die"
            victim = on_own[0][1]
            assert victim in jobs
            own.stop(signal.SIGKILL)  # and it stays down
        events = client.follow(victim, timeout=60)
        gap_free(events)
        assert events[-1]["type"] == "complete", events[-1]
        assert [e["type"] for e in recorded(events)].count("queued") == 2  # back in line once, then run on the other
        assert victim in httpx.get(f"{comfyui.url}/history/{victim}").json()
        health = httpx.get(f"{server.url}/healthz").json()
        assert [b["connected"] for b in health["backends"]] == [False, True]
    finally:
        server.stop()
        own.stop()
