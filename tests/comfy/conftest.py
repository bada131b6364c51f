from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.comfyui import ComfyProcess, comfyui_python, running_comfyui
from tests.helpers.server import ServerProcess, start_server


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyProcess]:
    """One ComfyUI for the session (its start and models cost about 15 s); tests that kill one start their own."""
    comfyui_python()  # skip (or fail in CI) before making models
    with running_comfyui(tmp_path_factory.mktemp("comfyui")) as comfy:
        yield comfy


def connected(health: dict) -> bool:
    return bool(health.get("backends")) and all(b["connected"] for b in health["backends"])


def start_comfy_server(data_dir: Path, comfy: ComfyProcess, port: int | None = None, **env: str) -> ServerProcess:
    """A real server whose jobs run on `comfy`."""
    settings = {"OLDPHOTO_COMFYUI_URL": comfy.url, "OLDPHOTO_USER_CONCURRENCY": "6", **env}
    return start_server(data_dir, settings, port=port, ready=connected)


@pytest.fixture(scope="module")
def comfy_server(tmp_path_factory: pytest.TempPathFactory, comfyui: ComfyProcess) -> Iterator[ServerProcess]:
    server = start_comfy_server(tmp_path_factory.mktemp("server"), comfyui)
    yield server
    server.stop()
