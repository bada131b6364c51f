"""Live previews through a real server: `preview` events in the job's log, the latest picture served to its owner
only, and gone with the job."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.helpers.server import ServerProcess, start_server
from tests.server.conftest import Client, png_bytes, recorded

# Upscale in 32-pixel tiles: a few seconds of tiles landing, so several previews at two a second.
SMALL_TILES = json.dumps(
    {
        "nodes": [
            {"id": "load", "type": "LoadImage"},
            {"id": "up", "type": "Upscale", "inputs": {"image": "load.image"}, "widgets_values": ["realesr-animevideov3-x2", 32]},
            {"id": "save", "type": "SaveImage", "inputs": {"images": "up.image"}},
        ]
    }
)
RETENTION_S = 7.2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, shared_models_dir: Path) -> Iterator[ServerProcess]:
    """Finished jobs are removed seconds after they end, so a test can see a preview go with its job."""
    process = start_server(
        tmp_path_factory.mktemp("server"),
        {
            "OLDPHOTO_MODEL": str(tiny_checkpoint),
            "OLDPHOTO_MODELS_DIR": str(shared_models_dir),
            "OLDPHOTO_RETENTION_HOURS": str(RETENTION_S / 3600),
            "OLDPHOTO_INPUT_SIZE": "256",  # a smaller network input: the colorize job takes seconds, not a minute
            # The cost estimate counts each 32-pixel tile's overhead as a full tile's: far above what they take.
            "OLDPHOTO_MAX_JOB_SECONDS": "3600",
        },
    )
    yield process
    process.stop()


def previews_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "preview"]


def picture(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert "no-store" in response.headers["cache-control"] and "private" in response.headers["cache-control"]
    return Image.open(io.BytesIO(response.content))


def test_an_upscale_previews_as_its_tiles_land_and_only_its_owner_sees_them(server: ServerProcess) -> None:
    alice, mallory = Client(server), Client(server)
    job_id = alice.submit(png_bytes(768, 576, seed=4), workflow=SMALL_TILES)["job_id"]  # 432 tiles: seconds, even on a fast core
    with alice.socket(f"?job_id={job_id}") as ws:
        first = json.loads(ws.recv(timeout=120))
        while first["type"] != "preview":
            first = json.loads(ws.recv(timeout=120))
        # While the job runs: the picture the event names is there for its owner, and for nobody else.
        running = picture(alice.http.get(first["preview"]["url"]))
        assert running.size == (256, 192) == (first["preview"]["width"], first["preview"]["height"])
        for stranger in (mallory.http, httpx.Client(base_url=server.url)):
            refused = stranger.get(first["preview"]["url"])
            assert refused.status_code in (401, 404), refused.status_code
            assert refused.json()["code"] in ("unauthorized", "not_found")
            assert refused.status_code == 401 or refused.json()["code"] == "not_found"

    events = recorded(alice.follow(job_id))  # the whole log again, replayed from seq 1
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "a gap or a repeat in the log"
    shown = previews_of(events)
    assert len(shown) >= 3, f"too few previews for a job of {len(events)} events"
    assert all(re.fullmatch(rf"/api/jobs/{job_id}/preview\?v=\d+", e["preview"]["url"]) for e in shown)
    assert [e["preview"]["frame"] for e in shown] == list(range(1, len(shown) + 1))
    assert all(e["source"] == "upscale" and e["stage"] == "inference" for e in shown)
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress), "a preview moved the bar back"
    span = shown[-1]["ts"] - shown[0]["ts"]
    assert len(shown) <= 2 * span + 2, f"{len(shown)} previews in {span:.1f} s"

    # The job is over: its latest picture stays with it, for its owner, until the job itself is removed.
    assert picture(alice.http.get(shown[-1]["preview"]["url"])).size == (256, 192)
    assert mallory.http.get(shown[-1]["preview"]["url"]).status_code == 404
    deadline = time.monotonic() + 6 * RETENTION_S
    while alice.http.get(f"/api/jobs/{job_id}").status_code != 404:
        assert time.monotonic() < deadline, "the job was never removed"
        time.sleep(0.5)
    gone = alice.http.get(shown[-1]["preview"]["url"])
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"


def test_a_job_without_a_picture_yet_has_no_preview(server: ServerProcess) -> None:
    alice = Client(server)
    job_id = alice.submit(png_bytes(64, 48, seed=5), workflow=SMALL_TILES)["job_id"]
    answer = alice.http.get(f"/api/jobs/{job_id}/preview")
    # Asked at once, the job is queued or just starting: either nothing yet (404 no_preview) or its first picture.
    assert answer.status_code in (200, 404)
    if answer.status_code == 404:
        assert answer.json()["code"] == "no_preview"
    alice.follow(job_id)


def test_a_colorize_job_previews_the_networks_colours(server: ServerProcess) -> None:
    alice = Client(server)
    job_id = alice.submit(png_bytes(300, 200, seed=6), steps="colorize")["job_id"]
    events = alice.follow(job_id)
    (shown,) = previews_of(events)
    assert shown["source"] == "colorize" and (shown["preview"]["width"], shown["preview"]["height"]) == (256, 171)
    kinds = [(e["type"], e["stage"]) for e in events]
    assert kinds.index(("preview", "inference")) < kinds.index(("progress", "postprocess"))
    assert events[-1]["type"] == "complete"
    assert picture(alice.http.get(shown["preview"]["url"])).size == (256, 171)
