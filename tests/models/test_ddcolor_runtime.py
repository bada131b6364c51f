"""DDColor's runtimes: the cut into blocks, the folded tail, ONNX Runtime segments, their disk cache and fallbacks."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from oldphoto.engine import warm_up
from oldphoto.engine.cancel import CancelToken
from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec
from oldphoto.engine.nodes.colorize import DDColorNode
from oldphoto.engine.reporter import Reporter
from oldphoto.errors import Cancelled
from oldphoto.models.cache import MODEL_CACHE
from oldphoto.models.ddcolor import Colorizer, colorize, load_colorizer
from oldphoto.models.ddcolor import export as onnx_export
from oldphoto.models.ddcolor import onnx as onnx_runtime
from oldphoto.models.ddcolor.segments import build_segments, run_segments_torch
from oldphoto.protocol import Note
from tests.models.conftest import CPU, FAST_INPUT
from tests.models.reference import authors_pipeline

pytest.importorskip("onnxruntime")

# ab spans about +-100 here; the runtimes agree with the network to ~3e-4 (float sums in another order).
AB_TOLERANCE = 0.02
FOLDED_ORDER = [
    "encoder.stem", "encoder.stage1", "encoder.downsample2", "encoder.stage2",
    "encoder.downsample3", "encoder.stage3", "encoder.downsample4", "encoder.stage4",
    "decoder.upsample1", "decoder.upsample2", "decoder.upsample3",
    *[f"color_decoder.layer{i}" for i in range(1, 10)],
    "decoder.last_shuf", "refine_net",
]  # fmt: skip


def gray(batch: int = 1, seed: int = 5, size: int = FAST_INPUT) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, size, size, generator=generator).expand(batch, 3, -1, -1).contiguous()


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The node on a fresh copy of the tiny checkpoint with runtime=onnx: the first use exports (once per module)."""
    folder = tmp_path_factory.mktemp("onnx_weights")
    weights = folder / "ddcolor_tiny.pth"
    os.link(tiny_checkpoint, weights)
    notes: list[Note] = []
    options = RunOptions(model=str(weights), models_dir=folder / "models", device="cpu", input_size=FAST_INPUT, runtime="onnx")
    node = DDColorNode.build(NodeSpec("c", "DDColor", params={"ab_upsample": "nearest"}))
    image = np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    report = Reporter(notes.append, CancelToken()).for_node("c", node.source, 0.0, 1.0)
    (out,) = node.run(NodeContext(report, options, image), image=image)
    colorizer, from_memory = load_colorizer(weights, CPU)
    assert from_memory
    return {"weights": weights, "notes": notes, "image": image, "out": out, "colorizer": colorizer}


def test_the_cut_runs_as_the_network(tiny_network: torch.nn.Module) -> None:
    x = gray(batch=2)
    with torch.inference_mode():
        expected = tiny_network(x)
    plain = run_segments_torch(build_segments(tiny_network, FAST_INPUT), x)
    assert torch.equal(plain, expected)  # the same operations in the same order: the same numbers
    segments = build_segments(tiny_network, FAST_INPUT, fold_tail=True)
    assert [s.name for s in segments] == FOLDED_ORDER
    folded = run_segments_torch(segments, x)
    assert float((folded - expected).abs().max()) < AB_TOLERANCE
    assert float(expected.abs().max()) > 20  # the comparison means something: ab spreads by tens


def test_the_torch_runtime_reports_every_block_and_matches(tiny_network: torch.nn.Module) -> None:
    colorizer = Colorizer(tiny_network, CPU, runtime="torch")
    events: list[tuple[int, int, str]] = []
    ab = torch.from_numpy(colorizer.infer(gray(), on_block=lambda *event: events.append(event)))
    assert events == [(i, 22, name) for i, name in enumerate(FOLDED_ORDER, 1)]
    assert colorizer.runtime(FAST_INPUT) == "torch" and colorizer.block_names == FOLDED_ORDER
    with torch.inference_mode():
        assert float((ab - tiny_network(gray())).abs().max()) < AB_TOLERANCE


def test_the_first_use_exports_and_says_so_in_the_load_model_stage(exported: dict[str, Any]) -> None:
    notes: list[Note] = exported["notes"]
    stages = [n.stage for n in notes if n.step_progress is None]
    assert stages == ["preprocess", "load_model", "inference", "postprocess"]
    preparing = [n for n in notes if n.message_key == "load_model.prepare"]
    assert preparing and all(n.stage == "load_model" for n in preparing)
    percents = [n.message_params["percent"] for n in preparing]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    assert exported["colorizer"].runtime(FAST_INPUT) == "onnx"
    blocks = [n.message_params["block"] for n in notes if n.message_key == "inference.block"]
    assert blocks == FOLDED_ORDER


def test_onnx_gives_the_torch_outputs(exported: dict[str, Any], tiny_network: torch.nn.Module) -> None:
    colorizer: Colorizer = exported["colorizer"]
    x = gray(batch=2, seed=9)
    with torch.inference_mode():
        expected = tiny_network(x)
    got = torch.from_numpy(colorizer.infer(x))
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) < AB_TOLERANCE
    # The whole faithful pipeline: the authors' pipeline to within one level.
    reference = authors_pipeline(exported["image"], tiny_network, FAST_INPUT)
    assert int(np.abs(exported["out"].astype(int) - reference.astype(int)).max()) <= 1


@pytest.mark.parametrize("stop_at", [1, 12, 21, 22])
def test_onnx_progress_in_order_and_a_cancel_between_segments(exported: dict[str, Any], stop_at: int) -> None:
    colorizer: Colorizer = exported["colorizer"]
    expected = torch.from_numpy(colorizer.infer(gray()))
    seen: list[int] = []

    def on_block(index: int, total: int, name: str) -> None:
        assert total == 22 and name == FOLDED_ORDER[index - 1]
        seen.append(index)
        if index == stop_at:
            raise Cancelled()

    with pytest.raises(Cancelled):
        colorizer.infer(gray(), on_block=on_block)
    assert seen == list(range(1, stop_at + 1))
    assert torch.equal(torch.from_numpy(colorizer.infer(gray())), expected)  # still usable, same numbers


def test_onnx_batches_drop_a_member_between_segments(exported: dict[str, Any]) -> None:
    colorizer: Colorizer = exported["colorizer"]
    x = gray(batch=3, seed=4)
    singles = [torch.from_numpy(colorizer.infer(x[i : i + 1])) for i in range(3)]
    ab = torch.from_numpy(colorizer.infer_batch(x, lambda index, total, name: [0, 2] if index == 7 else None))
    assert ab.shape[0] == 2
    for row, single in zip(ab, (singles[0], singles[2]), strict=True):
        assert float((row - single[0]).abs().max()) < 1e-3


def test_a_second_process_loads_the_graphs_from_disk(exported: dict[str, Any]) -> None:
    weights: Path = exported["weights"]
    models = weights.parent / "models"  # the fixture's models dir: weights outside it have their graphs under it
    key = onnx_runtime.graph_key(weights, FAST_INPUT, models)
    assert key.folder.parent.parent == models / onnx_runtime.CACHE_FOLDER
    manifest = json.loads((key.folder / "manifest.json").read_text())
    assert len(manifest["segments"]) == 22 and manifest["input_size"] == FAST_INPUT
    assert manifest["probe_max_abs_ab"] < onnx_runtime.AGREEMENT_AB
    MODEL_CACHE.clear()  # as a new worker process: nothing in memory
    colorizer, from_memory = load_colorizer(weights, CPU, "onnx", cache_dir=models)
    assert not from_memory and not colorizer.needs_export(FAST_INPUT)
    assert colorizer.prepare(FAST_INPUT) == "onnx"


def test_a_fresh_process_with_the_graphs_on_disk_never_imports_pytorch(exported: dict[str, Any], tmp_path: Path) -> None:
    """The cold start of a worker or of `oldphoto restore`: the cached graphs run without PyTorch or spandrel."""
    weights: Path = exported["weights"]
    photo = tmp_path / "in.png"
    cv2.imwrite(str(photo), cv2.cvtColor(exported["image"], cv2.COLOR_RGB2BGR))
    script = (
        "import sys\n"
        "from oldphoto.cli import main\n"
        f"code = main(['restore', {str(photo)!r}, '-o', {str(tmp_path / 'out.png')!r}, '--model', {str(weights)!r},"
        f" '--input-size', '{FAST_INPUT}', '--device', 'auto', '--ab-upsample', 'nearest', '--json'])\n"
        "print('IMPORTED', sorted(m for m in ('torch', 'spandrel', 'spandrel_extra_arches') if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "OLDPHOTO_MODELS_DIR": str(weights.parent / "models"), "OLDPHOTO_RUNTIME": "auto"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "IMPORTED []" in done.stdout
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(tmp_path / "out.png")), cv2.COLOR_BGR2RGB), exported["out"])


def test_sessions_keep_their_optimized_graphs_and_load_them_next_time(exported: dict[str, Any]) -> None:
    weights: Path = exported["weights"]
    key = onnx_runtime.graph_key(weights, FAST_INPUT, weights.parent / "models")
    manifest = json.loads((key.folder / "manifest.json").read_text())
    saved = key.folder / onnx_runtime.optimized_folder_name(ort_version())
    x = gray(batch=1, seed=11).numpy()
    built = onnx_runtime.OnnxSegments(key.folder, manifest, threads=1, keep_optimized=True)
    first = built.run(x)
    assert sorted(p.stem for p in saved.glob("*.ort")) == sorted(Path(e["file"]).stem for e in manifest["segments"])
    assert not list(saved.glob(".*partial"))
    mtimes = {p: p.stat().st_mtime_ns for p in saved.glob("*.ort")}
    again = onnx_runtime.OnnxSegments(key.folder, manifest, threads=1, keep_optimized=True)
    assert np.array_equal(again.run(x), first)
    assert {p: p.stat().st_mtime_ns for p in saved.glob("*.ort")} == mtimes  # read, not made again
    plain = onnx_runtime.OnnxSegments(key.folder, manifest, threads=1)
    assert np.array_equal(plain.run(x), first)  # the saved form is the same graph


def test_a_damaged_optimized_graph_is_built_again_from_the_export(exported: dict[str, Any]) -> None:
    weights: Path = exported["weights"]
    key = onnx_runtime.graph_key(weights, FAST_INPUT, weights.parent / "models")
    manifest = json.loads((key.folder / "manifest.json").read_text())
    x = gray(batch=1, seed=12).numpy()
    expected = onnx_runtime.OnnxSegments(key.folder, manifest, threads=1).run(x)
    saved = key.folder / onnx_runtime.optimized_folder_name(ort_version())
    onnx_runtime.OnnxSegments(key.folder, manifest, threads=1, keep_optimized=True).sessions  # noqa: B018 (saves them)
    damaged = sorted(saved.glob("*.ort"))[5]
    damaged.write_bytes(damaged.read_bytes()[:100])
    assert np.array_equal(onnx_runtime.OnnxSegments(key.folder, manifest, threads=1, keep_optimized=True).run(x), expected)
    assert damaged.stat().st_size > 100  # saved whole again


def test_a_session_that_cannot_be_built_fails_the_pass_and_releases_the_folder(exported: dict[str, Any], tmp_path: Path) -> None:
    weights: Path = exported["weights"]
    key = onnx_runtime.graph_key(weights, FAST_INPUT, weights.parent / "models")
    manifest = json.loads((key.folder / "manifest.json").read_text())
    for entry in manifest["segments"]:
        os.link(key.folder / entry["file"], tmp_path / entry["file"])
    broken = manifest["segments"][3]["file"]
    (tmp_path / broken).unlink()
    (tmp_path / broken).write_bytes(b"not a graph")
    released = threading.Event()
    segments = onnx_runtime.OnnxSegments(tmp_path, manifest, threads=1, on_built=released.set)
    blocks: list[int] = []
    with pytest.raises(Exception, match="(?i)protobuf|parse|load"):
        segments.run(gray(batch=1).numpy(), lambda index, total, name: blocks.append(index))
    assert blocks == [1, 2, 3]  # the blocks before it ran
    assert released.wait(5)


def test_a_fresh_worker_warms_the_servers_model_only_when_its_graphs_are_on_disk(exported: dict[str, Any], tmp_path: Path) -> None:
    weights: Path = exported["weights"]
    models = weights.parent / "models"
    options = RunOptions(model=str(weights), models_dir=models, device="cpu", input_size=FAST_INPUT, runtime="onnx")
    MODEL_CACHE.clear()  # a fresh worker
    assert warm_up(options) == ["DDColor"]
    colorizer, from_memory = load_colorizer(weights, "cpu", "onnx", cache_dir=models)
    assert from_memory and colorizer.engine_sizes == [FAST_INPUT] and not colorizer.network_loaded
    MODEL_CACHE.clear()
    # Nothing cheap to do: another input size (an export), the torch runtime (PyTorch and the network), no weights.
    assert warm_up(replace(options, input_size=2 * FAST_INPUT)) == []
    assert not onnx_runtime.graph_key(weights, 2 * FAST_INPUT, models).folder.exists()
    assert warm_up(replace(options, runtime="torch")) == []
    assert warm_up(replace(options, model=str(tmp_path / "missing.pth"))) == []
    assert len(MODEL_CACHE._items) == 0


def test_the_cache_key_follows_the_weights_content(tmp_path: Path, tiny_checkpoint: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(tiny_checkpoint.read_bytes())
    first = onnx_runtime.graph_key(weights, 512, None)
    record = json.loads((tmp_path / onnx_runtime.CACHE_FOLDER / "w.pth.sha256.json").read_text())
    assert record["sha256"] == first.sha256 and record["size"] == weights.stat().st_size
    assert onnx_runtime.graph_key(weights, 512, None) == first  # from the record: no second hash
    assert onnx_runtime.graph_key(weights, 256, None).folder != first.folder  # another input size, another graph
    with weights.open("r+b") as handle:  # the same size, new content and mtime: the weights were replaced
        handle.seek(-64, os.SEEK_END)
        handle.write(bytes(64))
    changed = onnx_runtime.graph_key(weights, 512, None)
    assert changed.sha256 != first.sha256 and changed.folder != first.folder


def test_a_read_only_weights_folder_caches_under_the_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights_dir = tmp_path / "models" / "readonly"
    weights_dir.mkdir(parents=True)
    weights = weights_dir / "w.pth"
    weights.write_bytes(b"x")
    assert onnx_runtime.cache_root(weights, tmp_path / "models") == weights_dir / onnx_runtime.CACHE_FOLDER
    # root may write anywhere: pretend the weights folder is read-only
    monkeypatch.setattr(onnx_runtime.os, "access", lambda path, mode: not str(path).startswith(str(weights_dir)))
    assert onnx_runtime.cache_root(weights, tmp_path / "models") == tmp_path / "models" / onnx_runtime.CACHE_FOLDER


@pytest.mark.slow
def test_changed_weights_are_exported_again_and_the_old_graphs_removed(exported: dict[str, Any], tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(Path(exported["weights"]).read_bytes())
    MODEL_CACHE.clear()
    colorizer, _ = load_colorizer(weights, CPU, "onnx")
    colorizer.prepare(FAST_INPUT)
    old = onnx_runtime.graph_key(weights, FAST_INPUT, None)
    assert old.folder.is_dir()
    params = torch.load(weights, map_location="cpu", weights_only=True)
    params["params"]["refine_net.0.0.bias"] = params["params"]["refine_net.0.0.bias"] + 1.0
    torch.save(params, weights)
    MODEL_CACHE.clear()
    colorizer, _ = load_colorizer(weights, CPU, "onnx")
    assert colorizer.needs_export(FAST_INPUT)
    assert colorizer.prepare(FAST_INPUT) == "onnx"
    new = onnx_runtime.graph_key(weights, FAST_INPUT, None)
    assert new.folder.is_dir() and not old.weights_folder.exists()
    with torch.inference_mode():
        assert float((torch.from_numpy(colorizer.infer(gray())) - colorizer.network(gray())).abs().max()) < AB_TOLERANCE
    MODEL_CACHE.clear()


def test_without_onnxruntime_auto_runs_torch(tiny_network: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_runtime, "onnxruntime_missing", lambda: "onnxruntime is not installed (test)")
    colorizer = Colorizer(tiny_network, CPU, runtime="auto")
    assert colorizer.planned_runtime() == "torch" and not colorizer.needs_export(FAST_INPUT)
    assert colorizer.prepare(FAST_INPUT) == "torch"


def test_a_failed_export_falls_back_to_torch_once_and_says_why(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    weights = tmp_path / "w.pth"
    os.link(tiny_checkpoint, weights)
    calls = []

    def failing(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise onnx_runtime.ExportFailed("a test says no")

    monkeypatch.setattr(onnx_export, "export_segments", failing)
    MODEL_CACHE.clear()
    colorizer, _ = load_colorizer(weights, CPU, "onnx")
    with caplog.at_level(logging.WARNING):
        assert colorizer.prepare(FAST_INPUT) == "torch"
    assert "a test says no" in caplog.text
    assert torch.from_numpy(colorizer.infer(gray())).shape == (1, 2, FAST_INPUT, FAST_INPUT)
    MODEL_CACHE.clear()  # a new process: the failure on disk is remembered, no second attempt
    colorizer, _ = load_colorizer(weights, CPU, "onnx")
    assert colorizer.prepare(FAST_INPUT) == "torch" and calls == [1]
    MODEL_CACHE.clear()


def test_a_cancel_during_the_export_is_the_jobs(tiny_network: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    colorizer = Colorizer(tiny_network, CPU, runtime="onnx")

    def cancel(fraction: float, what: str) -> None:
        if fraction > 0.2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        colorizer.prepare(FAST_INPUT, cancel)
    assert FAST_INPUT not in colorizer._engines  # nothing half-made is kept


def test_the_exact_runtime_is_the_default_of_a_plain_colorizer(tiny_network: torch.nn.Module) -> None:
    colorizer = Colorizer(tiny_network, CPU)
    assert colorizer.runtime(FAST_INPUT) == "exact"
    with torch.inference_mode():
        assert torch.equal(torch.from_numpy(colorizer.infer(gray())), tiny_network(gray()))


def test_switching_runtime_on_a_cached_model(exported: dict[str, Any]) -> None:
    colorizer: Colorizer = exported["colorizer"]
    image = exported["image"]
    try:
        colorizer.use_runtime("torch")
        torch_out = colorize(image, colorizer, input_size=FAST_INPUT)
        assert colorizer.runtime(FAST_INPUT) == "torch"
    finally:
        colorizer.use_runtime("onnx")
    onnx_out = colorize(image, colorizer, input_size=FAST_INPUT)
    assert colorizer.runtime(FAST_INPUT) == "onnx"
    assert int(np.abs(torch_out.astype(int) - onnx_out.astype(int)).max()) <= 1


def ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
