"""The DDColor node: the seed's stages in order, per-block progress, cancel, memory, download and the upscale."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from oldphoto.engine.cancel import CancelToken
from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec, parse_workflow
from oldphoto.engine.nodes.colorize import DDColorNode
from oldphoto.engine.nodes.upscale import Upscale
from oldphoto.engine.reporter import Reporter
from oldphoto.errors import Cancelled, InvalidWorkflow, ModelMissing
from oldphoto.models.ddcolor import colorize, load_colorizer
from oldphoto.models.runtimes import resolve_device
from oldphoto.protocol import Note
from tests.helpers.workflows import SEED_EXAMPLE as SEED_WORKFLOW

INPUT = 64  # small model input: a forward pass of the tiny network in ~0.1 s
STAGES = ["preprocess", "load_model", "inference", "postprocess"]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(1)
    base = np.linspace(20, 235, 120, dtype=np.float32)[None, :, None] * np.ones((77, 1, 3), np.float32)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def options(tiny_checkpoint: Path, shared_models_dir: Path) -> RunOptions:
    # The graphs exported once for every test of this process (the tests of the export itself make their own dir).
    return RunOptions(model=str(tiny_checkpoint), models_dir=shared_models_dir, device="cpu", input_size=512, ab_upsample="bilinear")


def run_node(
    image: np.ndarray, options: RunOptions, *widgets: object, cancel_at_block: int | None = None, **params: object
) -> tuple[np.ndarray | None, list[Note], Exception | None]:
    notes: list[Note] = []
    cancel = CancelToken()

    def sink(note: Note) -> None:
        notes.append(note)
        if cancel_at_block is not None and note.message_params.get("index") == cancel_at_block:
            cancel.cancel()  # as a user's DELETE arriving while this block's event goes out

    node = DDColorNode.build(NodeSpec("ddcolor_node", "DDColor", widgets=widgets or ("realesr-animevideov3", INPUT, False), params=params))
    report = Reporter(sink, cancel).for_node("ddcolor_node", node.source, 0.0, 1.0)
    try:
        (out,) = node.run(NodeContext(report, options, image), image=image)
    except Exception as exc:  # returned, so each test says which error it expects
        return None, notes, exc
    return out, notes, None


def stages(notes: list[Note]) -> list[str]:
    return [n.stage for n in notes if n.step_progress is None]


def test_the_seed_stages_in_order_then_one_step_per_block(image: np.ndarray, options: RunOptions) -> None:
    out, notes, error = run_node(image, options)
    assert error is None and out is not None
    assert stages(notes) == STAGES
    assert all(n.source == "colorize" and n.node == "ddcolor_node" for n in notes)
    blocks = [n for n in notes if n.message_key == "inference.block"]
    assert all(n.stage == "inference" for n in blocks)
    indices = [n.message_params["index"] for n in blocks]
    assert indices == sorted(set(indices)) and indices[-1] == 22 == blocks[-1].message_params["total"]
    assert blocks[-1].message_params["block"] == "refine_net" and blocks[-1].step_progress == 1.0
    progress = [n.progress for n in notes]
    assert progress == sorted(progress) and progress[-1] > progress[0]


def test_the_output_is_the_pipelines_at_the_nodes_settings(image: np.ndarray, options: RunOptions, tiny_checkpoint: Path) -> None:
    out, _, error = run_node(image, options)
    assert error is None and out is not None
    colorizer, _ = load_colorizer(tiny_checkpoint, resolve_device("cpu"))
    assert out.shape == image.shape
    assert np.array_equal(out, colorize(image, colorizer, input_size=INPUT, ab_upsample="bilinear"))
    nearest, _, _ = run_node(image, options, "realesr-animevideov3", INPUT, False, ab_upsample="nearest")
    assert np.array_equal(nearest, colorize(image, colorizer, input_size=INPUT, ab_upsample="nearest"))
    assert not np.array_equal(nearest, out)


def test_the_run_options_fill_in_what_the_node_leaves_out(image: np.ndarray, tiny_checkpoint: Path, tmp_path: Path) -> None:
    options = RunOptions(model=str(tiny_checkpoint), models_dir=tmp_path, device="cpu", input_size=96, ab_upsample="nearest")
    out, _, error = run_node(image, options, "realesr-animevideov3", None, False)
    assert error is None
    colorizer, _ = load_colorizer(tiny_checkpoint, resolve_device("cpu"))
    assert np.array_equal(out, colorize(image, colorizer, input_size=96, ab_upsample="nearest"))


def test_a_second_run_says_the_model_came_from_memory(image: np.ndarray, tiny_checkpoint: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.pth"
    os.link(tiny_checkpoint, fresh)  # a path of its own: no earlier test has loaded it
    options = RunOptions(model=str(fresh), models_dir=tmp_path, device="cpu")
    _, first, _ = run_node(image, options)
    _, second, _ = run_node(image, options)
    load_key = lambda notes: next(n.message_key for n in notes if n.stage == "load_model")  # noqa: E731
    assert load_key(first) == "load_model"
    assert load_key(second) == "load_model.memory"


@pytest.mark.parametrize("cancel_at", [3, 12])
def test_a_cancel_during_inference_stops_within_the_block(image: np.ndarray, options: RunOptions, cancel_at: int) -> None:
    out, notes, error = run_node(image, options, cancel_at_block=cancel_at)
    assert isinstance(error, Cancelled) and out is None
    blocks = [n.message_params["index"] for n in notes if n.message_key == "inference.block"]
    assert blocks[-1] == cancel_at
    assert "postprocess" not in stages(notes)


def test_offline_a_missing_model_is_model_missing_with_what_to_run(
    image: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    options = RunOptions(model="ddcolor_paper_tiny", models_dir=tmp_path, device="cpu")
    out, notes, error = run_node(image, options)
    assert isinstance(error, ModelMissing) and out is None
    assert error.code == "model_missing"
    assert "oldphoto models pull ddcolor_paper_tiny" in error.message
    assert stages(notes) == ["preprocess", "load_model"]
    assert notes[-1].message_key == "load_model.download"


@pytest.mark.slow
def test_first_use_downloads_with_percentages_then_colorizes(
    image: np.ndarray, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from tests.models.hub import serve_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with serve_hub() as hub:
        hub.put("piddnad/ddcolor_paper_tiny", "pytorch_model.bin", tiny_checkpoint.read_bytes())
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        options = RunOptions(model="ddcolor_paper_tiny", models_dir=tmp_path, device="cpu")
        out, notes, error = run_node(image, options)
    assert error is None and out is not None and out.shape == image.shape
    assert stages(notes) == STAGES
    downloads = [n for n in notes if n.message_key == "load_model.download"]
    assert downloads[0].message_params == {"model": "ddcolor_paper_tiny", "percent": 0}
    assert downloads[-1].message_params["percent"] == 100
    assert [n.message_params["percent"] for n in downloads] == sorted(n.message_params["percent"] for n in downloads)
    assert (tmp_path / "ddcolor_paper_tiny" / "pytorch_model.bin.sha256").is_file()


def test_with_upscale_on_the_colorized_photo_is_upscaled_in_the_same_node(image: np.ndarray, options: RunOptions) -> None:
    out, notes, error = run_node(image, options, "realesr-animevideov3", INPUT, True)
    assert error is None and out is not None
    assert out.shape == (image.shape[0] * 2, image.shape[1] * 2, 3)
    sources = [n.source for n in notes]
    assert sources == sorted(sources)  # every colorize event, then every upscale event
    assert [n.stage for n in notes if n.step_progress is None and n.source == "colorize"] == STAGES
    assert [n.stage for n in notes if n.step_progress is None and n.source == "upscale"] == STAGES
    progress = [n.progress for n in notes]
    assert progress == sorted(progress)
    split = next(n.progress for n in notes if n.source == "upscale")
    assert 55 <= split <= 70  # colorize's weight 10 of 16: the upscale starts about 62% into the node


def test_the_cost_includes_the_upscale_when_it_is_on() -> None:
    plain = DDColorNode.build(NodeSpec("n", "DDColor", widgets=("realesr-animevideov3", 512, False)))
    upscaling = DDColorNode.build(NodeSpec("n", "DDColor", widgets=("realesr-animevideov3", 512, True)))
    assert plain.cost() == DDColorNode.weight
    assert upscaling.cost() == DDColorNode.weight + Upscale.weight


def test_the_seed_workflow_validates_as_it_stands() -> None:
    workflow = parse_workflow(SEED_WORKFLOW)
    assert workflow.order == ("load_image", "ddcolor_node", "save_output")
    options = DDColorNode.options_from(workflow.nodes["ddcolor_node"])
    assert (options.upscale_model, options.input_size, options.upscale) == ("realesr-animevideov3", 512, False)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "/etc/passwd"}, "unknown model"),
        ({"model": "../models/x.pth"}, "unknown model"),
        ({"input_size": 500}, "multiple of 32"),
        ({"ab_upsample": "bicubic"}, "ab_upsample"),
        ({"upscale": True, "upscale_model": "no-such-net"}, "no-such-net"),
    ],
)
def test_bad_node_options_are_refused_before_anything_runs(params: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidWorkflow, match=message) as caught:
        DDColorNode.check_spec(NodeSpec("ddcolor_node", "DDColor", params=params), RunOptions())
    assert caught.value.node == "ddcolor_node"


def test_a_known_model_name_is_accepted_from_a_workflow() -> None:
    DDColorNode.check_spec(NodeSpec("ddcolor_node", "DDColor", params={"model": "ddcolor_artistic", "ab_upsample": "nearest"}), RunOptions())


def batched_options(tiny_checkpoint: Path, tmp_path: Path) -> RunOptions:
    # A long wait: the pass starts when the second job arrives, so the two always share it.
    return RunOptions(model=str(tiny_checkpoint), models_dir=tmp_path, device="cpu", runtime="torch", batch_max=2, batch_wait_ms=30_000)


def run_two_at_once(image: np.ndarray, options: RunOptions, cancel_first_at: int | None = None) -> list[tuple[np.ndarray | None, list[Note], Exception | None]]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(run_node, image, options, cancel_at_block=cancel_first_at)
        second = pool.submit(run_node, image[::-1].copy(), options)
        return [first.result(timeout=120), second.result(timeout=120)]


def test_with_batching_on_two_jobs_share_one_pass_and_each_sees_every_block(image: np.ndarray, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from oldphoto.models.ddcolor import shared_batcher

    options = batched_options(tiny_checkpoint, tmp_path)
    colorizer, _ = load_colorizer(tiny_checkpoint, resolve_device("cpu"), "torch")
    batcher = shared_batcher(colorizer, 2, 30.0)
    passes, members = batcher.batches_run, batcher.members_run
    results = run_two_at_once(image, options)
    assert (batcher.batches_run - passes, batcher.members_run - members) == (1, 2)
    for (out, notes, error), source in zip(results, (image, image[::-1].copy()), strict=True):
        assert error is None and out is not None
        assert stages(notes) == STAGES
        assert [n.message_params["index"] for n in notes if n.message_key == "inference.block"] == list(range(1, 23))
        alone = colorize(source, colorizer, input_size=INPUT, ab_upsample="bilinear")
        assert np.abs(out.astype(int) - alone.astype(int)).max() <= 1  # a batched pass may round differently


def test_a_job_cancelled_inside_a_shared_pass_stops_and_the_other_finishes(image: np.ndarray, tiny_checkpoint: Path, tmp_path: Path) -> None:
    (out, notes, error), (other, _, other_error) = run_two_at_once(image, batched_options(tiny_checkpoint, tmp_path), cancel_first_at=5)
    assert isinstance(error, Cancelled) and out is None
    assert [n.message_params["index"] for n in notes if n.message_key == "inference.block"][-1] == 5
    assert other_error is None and other is not None and other.shape == image.shape
