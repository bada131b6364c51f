"""The web process loads no model runtime (issue 12): torch, ONNX Runtime, ncnn and OpenCV stay in the workers, and
so does Pillow (decoding is the checkers' and the workers' work; the web process reads headers with its own code).

Seen from outside, as an operator would see it: after a real server has taken uploads, validated, costed and run their
jobs, and answered /api/models, /metrics and /healthz, the files mapped into the web process (/proc/<pid>/maps, its
own mappings only) include none from those packages' folders, where their shared libraries live. Its worker
processes, read the same way, do map them: the check sees a package where there is one. spandrel and
spandrel_extra_arches are pure Python, so they map nothing of their own; neither can be imported without torch.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.distributed.test_worker import worker
from tests.helpers.server import ServerProcess, start_server
from tests.helpers.services import postgres_database, redis_namespace, scale_out_env
from tests.server.conftest import Client, png_bytes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps"),
]

KEPT_OUT = ("torch", "onnxruntime", "ncnn", "cv2", "PIL")
# What a process that has run these jobs maps (the control: the test sees those libraries where they are): OpenCV
# from the moment it is ready (jobs/workers.py: its thread pool), ncnn from the first upscale, Pillow from the first
# decode. PyTorch and ONNX Runtime only once a colorize job has loaded a model (none can here).
IN_WORKERS = {"ncnn", "cv2", "PIL"}


def installed_at() -> dict[str, Path]:
    """Each package's folder, found without importing it."""
    folders = {}
    for name in KEPT_OUT:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations, f"{name} is not installed as a package"
        folders[name] = Path(next(iter(spec.submodule_search_locations))).resolve()
    return folders


def mapped(pid: int) -> set[str]:
    """The packages with a file mapped into process `pid` itself (a child's mappings are its own, not its parent's)."""
    folders = installed_at()
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            path = Path(fields[5].removesuffix(" (deleted)"))
            found |= {name for name, folder in folders.items() if path.is_relative_to(folder)}
    return found


def mapped_by_children(pid: int) -> dict[int, set[str]]:
    return {child.pid: mapped(child.pid) for child in psutil.Process(pid).children(recursive=True)}


def drive(server: ServerProcess) -> None:
    """What users and operators ask of a web process: every path through it that could import one of those."""
    client = Client(server)
    job_id = client.submit(png_bytes(64, 48), steps="denoise,upscale,sharpen")["job_id"]
    events = client.follow(job_id)
    assert events[-1]["type"] == "complete", events[-1]
    assert client.http.get(events[-1]["result_url"]).status_code == 200
    # Validated and costed in the web process like any other; with no weights here and downloads off, it fails in the
    # worker at once instead of running for a minute.
    job_id = client.submit(png_bytes(64, 48), steps="colorize")["job_id"]
    events = client.follow(job_id)
    assert events[-1]["type"] == "error" and events[-1]["code"] == "model_missing", events[-1]
    for path in ("/api/models", "/metrics", "/healthz", f"/api/jobs/{job_id}"):
        assert client.http.get(path).status_code == 200, path


@pytest.fixture
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process started by the test finds no DDColor weights and may not download any."""
    monkeypatch.setenv("OLDPHOTO_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def embedded(tmp_path: Path, no_weights: None) -> Iterator[ServerProcess]:
    server = start_server(tmp_path / "embedded", {"OLDPHOTO_WORKERS": "1"})
    yield server
    server.stop()


def test_the_embedded_web_process_maps_no_runtime_while_its_workers_do(embedded: ServerProcess) -> None:
    drive(embedded)
    assert mapped(embedded.process.pid) == set()
    assert any(IN_WORKERS <= found for found in mapped_by_children(embedded.process.pid).values())


@pytest.mark.scaleout
def test_a_scale_out_web_node_maps_no_runtime(tmp_path: Path, no_weights: None) -> None:
    with postgres_database() as database, redis_namespace() as (broker, prefix):
        (tmp_path / "worker").mkdir()
        with worker(database, broker, prefix, tmp_path / "worker") as worker_node:
            web = start_server(tmp_path / "web", scale_out_env(database, broker, prefix), ready=lambda health: "status" in health)
            try:
                drive(web)
                assert mapped(web.process.pid) == set()
                assert any(IN_WORKERS <= found for found in mapped_by_children(worker_node.pid).values())
            finally:
                web.stop()
