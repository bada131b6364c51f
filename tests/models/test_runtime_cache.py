"""The long-lived state a model input size creates is bounded (issue 11, item 1): engines in a worker's memory, and
exported ONNX graphs on disk, kept under the models dir and removed least recently used first past a size in bytes."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest
import torch

from oldphoto.models.cache import MODEL_CACHE
from oldphoto.models.ddcolor import Colorizer, load_colorizer
from oldphoto.models.ddcolor import onnx as onnx_runtime
from tests.models.conftest import CPU, FAST_INPUT

OTHER_INPUT = 96


def gray(size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(size)
    return torch.rand(1, 1, size, size, generator=generator).expand(1, 3, -1, -1).contiguous()


def test_a_colorizer_keeps_one_engine_per_input_size_at_a_time(tiny_network: torch.nn.Module) -> None:
    colorizer = Colorizer(tiny_network, CPU, runtime="torch")
    first = torch.from_numpy(colorizer.infer(gray(FAST_INPUT)))
    assert colorizer.engine_sizes == [FAST_INPUT]
    colorizer.infer(gray(OTHER_INPUT))
    assert colorizer.engine_sizes == [OTHER_INPUT]  # the other size's engine was let go
    assert torch.equal(torch.from_numpy(colorizer.infer(gray(FAST_INPUT))), first)  # made again, the same numbers
    assert colorizer.engine_sizes == [FAST_INPUT]


def test_more_engines_when_asked_least_recently_used_first(tiny_network: torch.nn.Module) -> None:
    colorizer = Colorizer(tiny_network, CPU, runtime="torch", max_engines=2)
    for size in (FAST_INPUT, OTHER_INPUT, FAST_INPUT, 128):
        colorizer.prepare(size)
    assert colorizer.engine_sizes == [FAST_INPUT, 128]


def _graph_folder(root: Path, weights: str, size: int, megabytes: int, used: float) -> Path:
    folder = root / onnx_runtime.CACHE_FOLDER / f"{weights}-{'0' * 16}" / f"onnx-v{onnx_runtime.FORMAT}-s{size}"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    with (folder / "01-encoder.stem.onnx").open("wb") as handle:
        handle.write(os.urandom(megabytes * 2**20))
    os.utime(folder / "manifest.json", (used, used))
    return folder


def test_eviction_removes_the_least_recently_used_until_the_rest_fit(tmp_path: Path) -> None:
    now = time.time()
    models = tmp_path / "models"
    old = _graph_folder(models, "a.pth", 256, 2, now - 300)
    middle = _graph_folder(models / "ddcolor_paper_tiny", "model.safetensors", 384, 2, now - 200)  # a model's own folder
    recent = _graph_folder(models, "a.pth", 512, 2, now - 100)
    onnx_runtime.mark_used(old)  # used just now: the oldest becomes the most recent
    removed = onnx_runtime.evict(models, 5 * 2**20)
    assert removed == [middle] and not middle.exists() and old.exists() and recent.exists()
    assert onnx_runtime.evict(models, 5 * 2**20) == []  # within the bound: nothing more
    assert onnx_runtime.evict(models, 0, keep=old) == [recent]  # the one in use stays whatever its size


def test_eviction_never_removes_graphs_another_process_holds(tmp_path: Path) -> None:
    models = tmp_path / "models"
    held = _graph_folder(models, "a.pth", 256, 1, time.time() - 100)
    with (held.parent / f"{held.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)  # as `load_segments` holds it while reading the graphs
        assert onnx_runtime.evict(models, 0) == [] and held.exists()
    assert onnx_runtime.evict(models, 0) == [held] and not held.exists()


def test_graphs_of_weights_outside_the_models_dir_go_under_it(tmp_path: Path) -> None:
    models = tmp_path / "models"
    inside = models / "ddcolor_paper_tiny" / "model.safetensors"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"x")
    elsewhere = tmp_path / "operator" / "mine.pth"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    assert onnx_runtime.cache_root(inside, models) == inside.parent / onnx_runtime.CACHE_FOLDER
    assert onnx_runtime.cache_root(elsewhere, models) == models / onnx_runtime.CACHE_FOLDER
    assert onnx_runtime.cache_root(elsewhere, None) == elsewhere.parent / onnx_runtime.CACHE_FOLDER


@pytest.mark.slow
def test_a_second_size_exported_past_the_bound_replaces_the_first_on_disk(tiny_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    models = tmp_path / "models"
    weights = tmp_path / "operator" / "ddcolor_tiny.pth"
    weights.parent.mkdir()
    os.link(tiny_checkpoint, weights)
    MODEL_CACHE.clear()
    try:
        colorizer, _ = load_colorizer(weights, CPU, "onnx", cache_dir=models)
        assert colorizer.prepare(FAST_INPUT) == "onnx"
        first = onnx_runtime.graph_key(weights, FAST_INPUT, models).folder
        assert first.is_relative_to(models)
        one = onnx_runtime.folder_bytes(first)
        colorizer.use_runtime("onnx", cache_max_bytes=int(one * 1.5))  # room for one size's graphs, not two
        assert colorizer.prepare(OTHER_INPUT) == "onnx"
        second = onnx_runtime.graph_key(weights, OTHER_INPUT, models).folder
        assert second.is_dir() and not first.exists()
        assert colorizer.engine_sizes == [OTHER_INPUT]
        assert torch.from_numpy(colorizer.infer(gray(OTHER_INPUT))).shape == (1, 2, OTHER_INPUT, OTHER_INPUT)
    finally:
        MODEL_CACHE.clear()
