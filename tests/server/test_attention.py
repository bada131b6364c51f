"""A colorize job's colour queries through a real server (docs/protocol.md, "Colour queries"): the index and its maps
for the job's owner, 404 for anyone else's job and for a job that has none."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from oldphoto.models.ddcolor.onnx import FORMAT
from tests.helpers.server import ServerProcess, start_server
from tests.server.conftest import Client, png_bytes


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, models: Path) -> Iterator[ServerProcess]:
    """The default runtime (ONNX Runtime here): the first colorize job exports the segments, then the lens beside them."""
    process = start_server(
        tmp_path_factory.mktemp("server"),
        {
            "OLDPHOTO_MODEL": str(tiny_checkpoint),
            "OLDPHOTO_MODELS_DIR": str(models),
            "OLDPHOTO_INPUT_SIZE": "64",  # the smallest model input: the export and the job take seconds
        },
    )
    yield process
    process.stop()


def png(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert "private" in response.headers["cache-control"]
    return Image.open(io.BytesIO(response.content))


def test_a_colorize_job_shows_its_colour_queries_to_its_owner_only(server: ServerProcess, models: Path) -> None:
    alice, mallory = Client(server), Client(server)
    job_id = alice.submit(png_bytes(120, 80, seed=7), steps="colorize")["job_id"]
    assert alice.follow(job_id)[-1]["type"] == "complete"

    answer = alice.http.get(f"/api/jobs/{job_id}/attention")
    assert answer.status_code == 200, answer.text
    index = answer.json()
    assert (index["width"], index["height"]) == (120, 80) and index["grid"] == [16, 16]
    assert index["dominance_url"] == f"/api/jobs/{job_id}/attention/dominance.png"
    dominance = png(alice.http.get(index["dominance_url"]))
    assert dominance.size == (120, 80) and dominance.mode == "RGB"
    queries = index["queries"]
    assert len(queries) == 6 and len({q["index"] for q in queries}) == 6
    for query in queries:
        assert set(query) == {"index", "push", "rgb", "share", "dominates", "max_ab", "map_url"}
        assert 0 <= query["index"] < 100 and len(query["push"]) == 2 and len(query["rgb"]) == 3
        assert png(alice.http.get(query["map_url"])).size == (120, 80)
    assert [q["share"] for q in queries] == sorted((q["share"] for q in queries), reverse=True)
    # The dominance map is drawn in the queries' colours: the top query's colour is there wherever it dominates.
    colours = set(dominance.getdata())
    assert any(tuple(q["rgb"]) in colours for q in queries if q["dominates"] > 0)

    for stranger in (mallory.http, httpx.Client(base_url=server.url)):
        for url in (f"/api/jobs/{job_id}/attention", index["dominance_url"]):
            refused = stranger.get(url)
            assert refused.status_code in (401, 404), refused.status_code
            assert refused.status_code == 401 or refused.json()["code"] == "not_found"
    if importlib.util.find_spec("onnxruntime") is not None:  # the worker ran ONNX Runtime and its lens graph
        assert [p.parent.name for p in models.rglob("lens.json")] == [f"onnx-v{FORMAT}-s64"]
    missing = alice.http.get(f"/api/jobs/{job_id}/attention/nothing-here.png")
    assert missing.status_code == 404 and missing.json()["code"] == "no_attention"


def test_a_job_without_colorize_has_no_colour_queries(server: ServerProcess) -> None:
    alice = Client(server)
    job_id = alice.submit(png_bytes(64, 48, seed=8), steps="denoise")["job_id"]
    assert alice.follow(job_id)[-1]["type"] == "complete"
    answer = alice.http.get(f"/api/jobs/{job_id}/attention")
    assert answer.status_code == 404 and answer.json()["code"] == "no_attention"
    assert alice.http.get(f"/api/jobs/{job_id}/attention/dominance.png").json()["code"] == "no_attention"
