"""Each node's live previews: Upscale fills in tile by tile, Denoise and Sharpen band by band, DDColor sends its
colours once the network ends; all within the rate and the size of engine/previews.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec
from oldphoto.engine.nodes import denoise, sharpen
from oldphoto.engine.nodes.base import Node
from oldphoto.engine.nodes.colorize import DDColorNode
from oldphoto.engine.nodes.upscale import Upscale
from oldphoto.engine.previews import MIN_GAP_S, Previews
from oldphoto.engine.reporter import NodeReporter, Reporter
from oldphoto.imaging.preview import shrink
from oldphoto.models.realesrgan import tile_boxes
from oldphoto.protocol import Note


class Recording(Previews):
    """Previews that keep each picture sent as it was made (before JPEG), with the moment it went."""

    def __init__(self, told: list[Any], min_gap_s: float = 0.0) -> None:
        super().__init__(self._sent, min_gap_s=min_gap_s)
        self.told = told  # notes and previews, in the order they were said
        self.pictures: list[np.ndarray] = []
        self.times: list[float] = []

    def offer(self, report: NodeReporter, picture: Callable[[], np.ndarray]) -> bool:
        return super().offer(report, lambda: self._keep(picture()))

    def _keep(self, image: np.ndarray) -> np.ndarray:
        self.pictures.append(image.copy())
        return image

    def _sent(self, note: Note, data: bytes) -> None:
        self.times.append(time.monotonic())
        self.told.append(note)


def run(node: Node, image: np.ndarray, options: RunOptions, min_gap_s: float = 0.0) -> tuple[np.ndarray, Recording]:
    told: list[Any] = []
    previews = Recording(told, min_gap_s)
    report = Reporter(sink=told.append).for_node("n", node.source, 0.0, 1.0)
    (out,) = node.run(NodeContext(report, options, image, previews), image=image)
    return out, previews


def textured(height: int, width: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def upscale_node(tile: int) -> Node:
    return Upscale.build(NodeSpec("up", "Upscale", widgets=("realesr-animevideov3-x2", tile)))


def test_upscale_fills_in_tile_by_tile(tmp_path: Path) -> None:
    image = textured(64, 96)
    out, previews = run(upscale_node(32), image, RunOptions(models_dir=tmp_path))
    boxes = [(t * 2, l * 2, b * 2, r * 2) for t, l, b, r in tile_boxes(64, 96, 32)]
    assert len(previews.pictures) == len(boxes) == 6
    start = shrink(image, 128, 192)  # the output is small enough to be its own preview: every pixel can be checked
    for landed, picture in enumerate(previews.pictures, start=1):
        for index, (top, left, bottom, right) in enumerate(boxes, start=1):
            expected = out if index <= landed else start
            assert np.array_equal(picture[top:bottom, left:right], expected[top:bottom, left:right]), (landed, index)
    notes = [n for n in previews.told if n.type == "preview"]
    assert all((n.stage, n.source, n.node) == ("inference", "upscale", "n") for n in notes)
    assert [(n.preview.width, n.preview.height) for n in notes] == [(192, 128)] * 6
    tiles = [n for n in previews.told if n.message_key == "upscale.tile"]
    assert all(p.progress >= t.progress for p, t in zip(notes, tiles)), "a preview carried less than the bar showed"


def test_upscale_keeps_to_two_a_second_on_fast_tiles(tmp_path: Path) -> None:
    image = textured(256, 256)
    _, previews = run(upscale_node(32), image, RunOptions(models_dir=tmp_path), min_gap_s=MIN_GAP_S)  # 64 tiles
    gaps = np.diff(previews.times)
    assert len(previews.times) >= 1
    assert (gaps >= MIN_GAP_S - 0.01).all(), gaps
    assert all(max(p.shape[:2]) <= 256 for p in previews.pictures)


@pytest.mark.parametrize(("module", "node_type"), [(denoise, "Denoise"), (sharpen, "Sharpen")])
def test_bands_fill_in_band_by_band(module: Any, node_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "BAND_ROWS", 48)
    image = textured(200, 120)
    node = {"Denoise": denoise.Denoise, "Sharpen": sharpen.Sharpen}[node_type].build(NodeSpec("n", node_type))
    out, previews = run(node, image, RunOptions())
    assert len(previews.pictures) == 5  # ceil(200 / 48)
    for done, picture in enumerate(previews.pictures, start=1):
        edge = min(200, done * 48)
        assert np.array_equal(picture[:edge], out[:edge]) and np.array_equal(picture[edge:], image[edge:]), done
    assert {n.source for n in previews.told if n.type == "preview"} == {node.source}


def test_a_large_photo_is_previewed_within_256_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sharpen, "BAND_ROWS", 400)
    image = textured(1200, 700)
    _, previews = run(sharpen.Sharpen.build(NodeSpec("n", "Sharpen")), image, RunOptions())
    assert {p.shape for p in previews.pictures} == {(256, 149, 3)}


def test_ddcolor_sends_its_colours_once_the_network_ends(tiny_checkpoint: Path, shared_models_dir: Path) -> None:
    image = textured(77, 120)
    options = RunOptions(model=str(tiny_checkpoint), models_dir=shared_models_dir, device="cpu", input_size=64)
    out, previews = run(DDColorNode.build(NodeSpec("n", "DDColor")), image, options)

    (picture,) = previews.pictures
    said = [n.message_key if n.type != "preview" else "preview" for n in previews.told]
    assert said.index("preview") == said.index("postprocess") - 1, said  # after the last block, before the postprocess
    assert said[said.index("preview") - 1] == "inference.block"
    assert picture.shape == out.shape  # the photo's shape, not the network's square
    # The same colours as the result, from the network's resolution: close, not equal (no full-size upsampling).
    assert np.abs(picture.astype(int) - out.astype(int)).mean() < 6
