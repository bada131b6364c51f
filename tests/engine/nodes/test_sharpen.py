"""The Sharpen node: an unsharp mask with a threshold."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec
from oldphoto.engine.nodes.sharpen import BAND_ROWS, Sharpen
from oldphoto.engine.reporter import Reporter
from oldphoto.errors import InvalidWorkflow
from oldphoto.protocol import Note


def sharpen(image: np.ndarray, **params: object) -> tuple[np.ndarray, list[Note]]:
    notes: list[Note] = []
    report = Reporter(sink=notes.append).for_node("n", "sharpen", 0.0, 1.0)
    (out,) = Sharpen.build(NodeSpec("sh", "Sharpen", params=params)).run(NodeContext(report, RunOptions(), image), image=image)
    return out, notes


def soft_edge(width: int = 64, height: int = 32) -> np.ndarray:
    """A blurred vertical step from dark grey to light grey: an out-of-focus edge."""
    step = np.full((height, width, 3), 60, np.uint8)
    step[:, width // 2 :] = 190
    return cv2.GaussianBlur(step, (0, 0), 2.0)


def edge_contrast(image: np.ndarray) -> float:
    """The steepest change across the edge, on the middle row."""
    row = image[image.shape[0] // 2, :, 0].astype(np.int16)
    return float(np.abs(np.diff(row)).max())


def test_increases_edge_contrast_and_keeps_size() -> None:
    edge = soft_edge()
    out, _ = sharpen(edge, amount=1.0, radius=2.0)
    assert out.shape == edge.shape and out.dtype == np.uint8
    assert edge_contrast(out) > 1.3 * edge_contrast(edge)
    # Overshoot on both sides, the mark of an unsharp mask, and nothing far from the edge moves.
    row = out[16, :, 0]
    assert row.min() < 60 and row.max() > 190
    assert np.array_equal(out[:, :8], edge[:, :8]) and np.array_equal(out[:, -8:], edge[:, -8:])


def test_more_amount_is_more_contrast() -> None:
    edge = soft_edge()
    contrasts = [edge_contrast(sharpen(edge, amount=a)[0]) for a in (0.3, 1.0, 2.0)]
    assert contrasts == sorted(contrasts) and contrasts[0] < contrasts[-1]


def test_amount_zero_is_identity(photo: Path) -> None:
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)[:128, :160]
    out, _ = sharpen(rgb, amount=0, threshold=0)
    assert np.array_equal(out, rgb)


def test_differences_below_the_threshold_are_left_alone() -> None:
    grain = (128 + np.random.default_rng(0).integers(-1, 2, (40, 40, 1))).repeat(3, axis=2).astype(np.uint8)
    assert np.array_equal(sharpen(grain, amount=2.0, threshold=4)[0], grain)
    assert not np.array_equal(sharpen(grain, amount=2.0, threshold=0)[0], grain)


def test_grey_stays_grey_and_colour_edges_move_together() -> None:
    grey = np.repeat(soft_edge()[..., :1], 3, axis=2)
    out, _ = sharpen(grey, amount=1.5)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    # A strong red edge with a faint blue one: where red is sharpened, blue is sharpened too.
    colour = soft_edge().copy()
    colour[..., 2] = 60 + (colour[..., 0].astype(np.int16) - 60) // 20
    out, _ = sharpen(colour, amount=1.5, threshold=3)
    red_moved = out[..., 0] != colour[..., 0]
    blue_detail = np.abs(colour[..., 2].astype(np.float32) - cv2.GaussianBlur(colour[..., 2].astype(np.float32), (0, 0), 1.5))
    blue_should_move = red_moved & (blue_detail * 1.5 >= 0.5)
    assert blue_should_move.any()
    assert (out[..., 2][blue_should_move] != colour[..., 2][blue_should_move]).all()


def whole_image_unsharp(rgb: np.ndarray, amount: float, radius: float, threshold: int) -> np.ndarray:
    """The same unsharp mask in one pass over the whole image: what the bands must add up to."""
    pixels = rgb.astype(np.float32)
    detail = pixels - cv2.GaussianBlur(pixels, (0, 0), radius)
    mask = np.abs(detail).max(axis=2, keepdims=True) >= threshold
    return np.clip(np.rint(np.where(mask, pixels + amount * detail, pixels)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("radius", [0.7, 1.5, 6.0])
def test_bands_give_exactly_the_whole_image_result(photo: Path, radius: float) -> None:
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)[:, :120]  # full height: several bands
    assert rgb.shape[0] > BAND_ROWS
    out, notes = sharpen(rgb, amount=1.2, radius=radius, threshold=2)
    assert np.array_equal(out, whole_image_unsharp(rgb, 1.2, radius, 2))
    steps = [n.step_progress for n in notes if n.step_progress is not None]
    assert steps[-1] == 1.0 and steps == sorted(steps)


def test_reports_its_stages_with_its_source() -> None:
    _, notes = sharpen(soft_edge(), amount=0.8)
    assert [n.stage for n in notes if n.step_progress is None] == ["preprocess", "inference", "postprocess"]
    assert all(n.source == "sharpen" for n in notes)
    assert notes[1].message_params == {"amount": 0.8}


def test_the_seeds_widgets_and_their_bounds() -> None:
    options = Sharpen.build(NodeSpec("sh", "Sharpen", widgets=(1.2, 3.0, 5))).options
    assert (options.amount, options.radius, options.threshold) == (1.2, 3.0, 5)
    with pytest.raises(InvalidWorkflow):
        Sharpen.check_spec(NodeSpec("sh", "Sharpen", widgets=(1.0, 0)), RunOptions())
