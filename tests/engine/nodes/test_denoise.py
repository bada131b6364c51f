"""The Denoise node: OpenCV non-local means, in bands."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from oldphoto.engine.cancel import CancelToken
from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec
from oldphoto.engine.nodes.denoise import BAND_ROWS, Denoise
from oldphoto.engine.reporter import Reporter
from oldphoto.errors import Cancelled, InvalidWorkflow
from oldphoto.protocol import Note


def node_context(image: np.ndarray, cancel: CancelToken | None = None) -> tuple[NodeContext, list[Note]]:
    notes: list[Note] = []
    report = Reporter(sink=notes.append, cancel=cancel).for_node("n", "denoise", 0.0, 1.0)
    return NodeContext(report, RunOptions(), image), notes


def denoise(image: np.ndarray, **params: object) -> tuple[np.ndarray, list[Note]]:
    node = Denoise.build(NodeSpec("dn", "Denoise", params=params))
    ctx, notes = node_context(image)
    (out,) = node.run(ctx, image=image)
    return out, notes


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def clean_scene(height: int = 300, width: int = 200) -> np.ndarray:
    """Smooth shading with a few hard-edged shapes in colour: what a denoiser must keep."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([40 + 150 * x / width, 60 + 120 * y / height, 90 + 60 * (x + y) / (width + height)], axis=2)
    cv2.rectangle(image, (30, 40), (120, 110), (220, 200, 60), -1)
    cv2.circle(image, (140, 210), 40, (30, 60, 180), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def noisy(clean: np.ndarray, sigma: float = 12.0, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return np.clip(clean + noise, 0, 255).astype(np.uint8)


def test_removes_noise_and_keeps_size_and_dtype() -> None:
    clean = clean_scene()
    dirty = noisy(clean)
    out, _ = denoise(dirty, strength=10)
    assert out.shape == dirty.shape and out.dtype == np.uint8
    gain = psnr(out, clean) - psnr(dirty, clean)
    assert gain > 5, f"PSNR {psnr(dirty, clean):.1f} -> {psnr(out, clean):.1f} dB"


def test_bands_give_exactly_the_whole_image_result() -> None:
    dirty = noisy(clean_scene(height=2 * BAND_ROWS + 77, width=96), seed=3)
    out, notes = denoise(dirty, strength=7, template_window=5, search_window=15)
    bgr = cv2.cvtColor(dirty, cv2.COLOR_RGB2BGR)
    whole = cv2.cvtColor(cv2.fastNlMeansDenoisingColored(bgr, None, 7, 7, 5, 15), cv2.COLOR_BGR2RGB)
    assert np.array_equal(out, whole)
    steps = [n.step_progress for n in notes if n.step_progress is not None]
    assert steps[-1] == 1.0 and steps == sorted(steps)


def test_colour_is_kept() -> None:
    clean = clean_scene()
    out, _ = denoise(noisy(clean), strength=10)
    # The means of each channel stay where they were: no channel swap, no colour cast.
    assert np.allclose(out.reshape(-1, 3).mean(0), clean.reshape(-1, 3).mean(0), atol=2.0)


def test_strength_zero_leaves_the_photo_alone() -> None:
    dirty = noisy(clean_scene())
    out, notes = denoise(dirty, strength=0)
    assert np.array_equal(out, dirty)
    assert [n.stage for n in notes] == ["preprocess", "postprocess"]


def test_reports_its_stages_with_its_source() -> None:
    _, notes = denoise(noisy(clean_scene(height=40, width=40)), strength=3)
    assert [n.stage for n in notes if n.step_progress is None] == ["preprocess", "inference", "postprocess"]
    assert all(n.source == "denoise" for n in notes)
    assert next(n for n in notes if n.stage == "inference").message_params == {"strength": 3.0}


def test_cancel_stops_between_bands() -> None:
    image = noisy(clean_scene(height=3 * BAND_ROWS, width=64))
    cancel = CancelToken()
    ctx, notes = node_context(image, cancel)

    def cancel_after_first_band(note: Note) -> None:
        notes.append(note)
        if note.step_progress:
            cancel.cancel()

    ctx.report.run.sink = cancel_after_first_band
    with pytest.raises(Cancelled):
        Denoise.build(NodeSpec("dn", "Denoise")).run(ctx, image=image)
    assert [round(n.step_progress, 2) for n in notes if n.step_progress] == [0.33]


def test_the_seeds_widget_is_the_strength() -> None:
    assert Denoise.build(NodeSpec("dn", "Denoise", widgets=(4,))).options.strength == 4
    with pytest.raises(InvalidWorkflow):
        Denoise.check_spec(NodeSpec("dn", "Denoise", widgets=(99,)), RunOptions())


def test_on_a_real_photo(photo: Path) -> None:
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)[:200, :300]
    out, _ = denoise(rgb, strength=5)
    assert out.shape == rgb.shape
    # Gentle: a real photo comes out close to itself, only smoother.
    assert psnr(out, rgb) > 28
    assert cv2.Laplacian(out, cv2.CV_64F).var() < cv2.Laplacian(rgb, cv2.CV_64F).var()
