"""The ComfyUI backend against a real ComfyUI (issue 15; docs/comfyui.md): the seed's example workflow runs there,
its events are relayed live into this service's log and replay from any seq; ComfyUI's own prompts run as they
are, checked first; cancel stops this job's prompt, queued or running, and never another's."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest
from PIL import Image

from tests.comfy.conftest import start_comfy_server
from tests.helpers.comfyui import SLOW_UPSCALE_MODEL, UPSCALE_MODEL, ComfyProcess
from tests.helpers.images import png_bytes
from tests.helpers.server import ServerProcess
from tests.helpers.workflows import SEED_EXAMPLE
from tests.server.conftest import Client, read_until_final, recorded

pytestmark = pytest.mark.slow



def upscale_prompt(model: str = UPSCALE_MODEL) -> dict:
    """ComfyUI's core upscale nodes in its API form: they report per tile."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "anything.png"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }


def steps_prompt(steps: int = 6, seconds: float = 0.3) -> dict:
    """The tests' own custom node (tests/helpers/comfyui.py): a step at a time, each with a preview."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "anything.png"}},
        "2": {"class_type": "OldphotoTestSteps", "inputs": {"image": ["1", 0], "steps": steps, "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }


def slow_prompt() -> dict:
    """Long enough to cancel or to cut: a full-size compact upscaler (seconds per tile here)."""
    return upscale_prompt(SLOW_UPSCALE_MODEL)


def gap_free(events: list[dict]) -> list[int]:
    seqs = [e["seq"] for e in recorded(events)]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    return seqs


def test_the_seeds_example_runs_on_comfyui_with_live_replayable_progress(comfy_server: ServerProcess) -> None:
    client = Client(comfy_server)
    photo = png_bytes(96, 64)
    job = client.submit(photo, workflow=json.dumps(SEED_EXAMPLE))["job_id"]
    events = client.follow(job)
    gap_free(events)
    assert events[-1]["type"] == "complete", events[-1]
    progress = [e["progress"] for e in recorded(events)]
    assert progress == sorted(progress) and progress[-1] == 100
    stages = [e["stage"] for e in recorded(events)]
    assert stages[:2] == ["upload", "queued"] and "inference" in stages and stages[-1] == "complete"
    colorize = [e for e in events if e.get("node") == "ddcolor_node"]
    assert colorize and {e["source"] for e in colorize} == {"colorize"}
    # The DDColor node reports nothing itself: its movement is an estimate, and says so.
    assert any("estimated" in e["message"] for e in colorize), [e["message"] for e in colorize]
    result = Image.open(io.BytesIO(client.http.get(f"/results/{job}.png").content))
    assert result.size == (96, 64) and result.mode == "RGB"
    # Replay: from any seq the rest of the same log, nothing twice.
    middle = recorded(events)[len(recorded(events)) // 2]["seq"]
    rest = client.follow(job, after_seq=middle)
    assert [e["seq"] for e in recorded(rest)] == list(range(middle + 1, events[-1]["seq"] + 1))
    assert client.http.get(f"/api/jobs/{job}").json()["status"] == "succeeded"


def test_comfyuis_own_prompt_runs_as_it_is_with_per_tile_progress(comfy_server: ServerProcess) -> None:
    client = Client(comfy_server)
    job = client.submit(png_bytes(1100, 600), workflow=json.dumps(upscale_prompt()))["job_id"]
    events = client.follow(job)
    gap_free(events)
    assert events[-1]["type"] == "complete", events[-1]
    tiles = [e for e in events if e.get("node") == "3" and e.get("step_progress") is not None]
    assert len(tiles) >= 2 and {e["source"] for e in tiles} == {"upscale"}, [e.get("message") for e in events]
    steps = [e["step_progress"] for e in tiles]
    assert steps == sorted(steps)
    assert Image.open(io.BytesIO(client.http.get(f"/results/{job}.png").content)).size == (2200, 1200)


@pytest.mark.parametrize(
    ("workflow", "node", "says"),
    [
        ({"steps": "denoise,colorize"}, "denoise", "no ComfyUI equivalent"),
        ({**upscale_prompt(), "3": {"class_type": "NoSuchNode", "inputs": {}}}, "3", "no node type 'NoSuchNode'"),
        ({**upscale_prompt(), "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "missing.pth"}}}, "2", "choices"),
        (
            {**upscale_prompt(), "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["9", 0], "image": ["1", 0]}}},
            "3",
            "not in the prompt",
        ),
    ],
)
def test_a_workflow_the_instance_cannot_run_is_a_400_naming_the_node(
    comfy_server: ServerProcess, workflow: dict, node: str, says: str
) -> None:
    client = Client(comfy_server)
    fields = {"steps": workflow["steps"]} if "steps" in workflow else {"workflow": json.dumps(workflow)}
    answer = client.http.post("/api/jobs", files={"file": ("p.png", png_bytes(32, 32))}, data=fields)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == "invalid_workflow" and f"node {node!r}" in body["error"] and says in body["error"], body


def wait_for(client: Client, job: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.http.get(f"/api/jobs/{job}").json()
        if answer["status"] == status:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"job {job} never became {status}: {answer}")


def test_cancel_stops_this_jobs_prompt_running_or_waiting_on_comfyui_and_never_anothers(
    comfy_server: ServerProcess, comfyui: ComfyProcess
) -> None:
    alice, bob, carol = Client(comfy_server), Client(comfy_server), Client(comfy_server)
    running = alice.submit(png_bytes(1024, 768), workflow=json.dumps(slow_prompt()))["job_id"]
    waiting = bob.submit(png_bytes(1024, 768), workflow=json.dumps(slow_prompt()))["job_id"]  # the instance's second slot: its queue
    later = carol.submit(png_bytes(64, 64), workflow=json.dumps(SEED_EXAMPLE))["job_id"]  # waits here
    with alice.socket(f"?job_id={running}") as ws:
        while json.loads(ws.recv(timeout=60)).get("step_progress") is None:
            pass  # its tiles are being counted: it runs on ComfyUI
        assert httpx.get(f"{comfyui.url}/queue").json()["queue_pending"], "bob's prompt waits in ComfyUI's queue"
        assert bob.http.delete(f"/api/jobs/{waiting}").status_code == 202
        assert wait_for(bob, waiting, "cancelled")
        time.sleep(1.0)
        assert alice.http.get(f"/api/jobs/{running}").json()["status"] == "running"  # bob's cancel left alice's alone
        assert carol.http.delete(f"/api/jobs/{running}").status_code == 404  # nor can carol touch it
        asked = time.monotonic()
        ws.send(json.dumps({"type": "cancel", "job_id": running}))
        final = read_until_final(ws, 30)[-1]
        took = time.monotonic() - asked
    assert final["type"] == "cancelled" and took < 10, (final, took)
    assert wait_for(carol, later, "succeeded")  # the next in line ran
    history = httpx.get(f"{comfyui.url}/history").json()
    assert waiting not in history  # taken out of ComfyUI's queue before it ran
    assert history[running]["status"]["status_str"] == "error"  # interrupted


def test_each_user_sees_only_their_jobs(comfy_server: ServerProcess) -> None:
    alice, bob = Client(comfy_server), Client(comfy_server)
    job = alice.submit(png_bytes(32, 32), workflow=json.dumps(SEED_EXAMPLE))["job_id"]
    assert bob.http.get(f"/api/jobs/{job}").status_code == 404
    assert job not in {j["job_id"] for j in bob.http.get("/api/jobs").json()}
    assert alice.follow(job)[-1]["type"] == "complete"


def test_healthz_shows_each_instance(comfy_server: ServerProcess, comfyui: ComfyProcess) -> None:
    health = httpx.get(f"{comfy_server.url}/healthz").json()
    assert health["backends"] == [{"url": comfyui.url, "connected": True, "prompts": health["backends"][0]["prompts"], "slots": 2}]


def test_with_one_slot_the_fair_queue_here_decides_who_goes_next(tmp_path, comfyui: ComfyProcess) -> None:
    # Sessions, not addresses, are the users here: both come from 127.0.0.1 (docs/jobs.md, "Fairness").
    server = start_comfy_server(tmp_path / "one-slot", comfyui, OLDPHOTO_COMFYUI_SLOTS="1", OLDPHOTO_ANONYMOUS_SHARE="session")
    try:
        alice, bob = Client(server), Client(server)
        photo = png_bytes(1024, 768)  # a second or more each: all four are in before the first ends
        alices = [alice.submit(photo, workflow=json.dumps(upscale_prompt()))["job_id"] for _ in range(3)]
        bobs = bob.submit(photo, workflow=json.dumps(upscale_prompt()))["job_id"]
        assert len(httpx.get(f"{comfyui.url}/queue").json()["queue_pending"]) <= 1
        started = {job: wait_for(alice if job in alices else bob, job, "succeeded", 120)["started_at"] for job in [*alices, bobs]}
        assert started[bobs] < started[alices[2]]  # bob's one job went before alice's third
    finally:
        server.stop()


def test_a_custom_nodes_steps_and_previews_are_relayed(comfy_server: ServerProcess) -> None:
    client = Client(comfy_server)
    job = client.submit(png_bytes(640, 480), workflow=json.dumps(steps_prompt(steps=6, seconds=0.3)))["job_id"]
    events = client.follow(job)
    gap_free(events)
    assert events[-1]["type"] == "complete", events[-1]
    counted = [e for e in events if e.get("node") == "2" and e["type"] == "progress" and e.get("step_progress") is not None]
    steps = [e for e in counted if "estimated" not in e["message"]]  # before its first step it is estimated, as any
    assert [round(e["step_progress"] * 6) for e in steps] == [1, 2, 3, 4, 5, 6], [e.get("message") for e in events]
    assert {e["source"] for e in steps} == {"comfyui"} and steps[0]["message"] == "ComfyUI: OldphotoTestSteps 1/6"
    previews = [e for e in events if e["type"] == "preview"]
    assert 1 <= len(previews) <= 6, len(previews)  # at most two a second are kept
    frames = [e["preview"]["frame"] for e in previews]
    assert frames == sorted(frames) and previews[-1]["preview"]["width"] <= 256
    picture = client.http.get(previews[-1]["preview"]["url"])
    assert picture.status_code == 200 and picture.content.startswith(b"\xff\xd8")  # a JPEG
    assert Image.open(io.BytesIO(picture.content)).size == (previews[-1]["preview"]["width"], previews[-1]["preview"]["height"])
