from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oldphoto.errors import BadInput
from oldphoto.models.ddcolor import Colorizer, colorize, postprocess, preprocess
from tests.helpers.checkpoints import read_params
from tests.models.authors import authors_network
from tests.models.conftest import FAST_INPUT, read_rgb
from tests.models.reference import authors_pipeline

# 128 is the smallest input where the network sees the photo's structure at all; still ~0.2 s a pass.
PHOTO_INPUT = 128


@pytest.fixture(scope="module")
def photo_rgb(photo: Path) -> np.ndarray:
    return read_rgb(photo)


@pytest.fixture(params=["synthetic", "photo"])
def image(request: pytest.FixtureRequest) -> np.ndarray:
    return request.getfixturevalue("synthetic_image" if request.param == "synthetic" else "photo_rgb")


@pytest.fixture(scope="module")
def authors(tiny_checkpoint: Path) -> torch.nn.Module:
    network, result = authors_network(read_params(tiny_checkpoint))
    # ModelScope's copy still declares ConvNeXt's unused classifier head; everything else comes from the checkpoint.
    assert result.missing_keys == ["encoder.arch.head_cls.weight", "encoder.arch.head_cls.bias"]
    assert result.unexpected_keys == []
    return network


def levels_apart(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def lightness(rgb: np.ndarray) -> np.ndarray:
    """L in 0..100 as the pipeline computes it (float32 RGB in 0..1, OpenCV Lab)."""
    return cv2.cvtColor((rgb / 255.0).astype(np.float32), cv2.COLOR_RGB2Lab)[:, :, 0]


def test_nearest_is_the_authors_pipeline(image: np.ndarray, colorizer: Colorizer, tiny_network: torch.nn.Module) -> None:
    theirs = authors_pipeline(image, tiny_network, PHOTO_INPUT)
    ours = colorize(image, colorizer, input_size=PHOTO_INPUT, ab_upsample="nearest")
    assert levels_apart(ours, theirs) <= 1
    # The yardstick tells pipelines apart: bilinear ab differs from it wherever colour changes.
    bilinear = colorize(image, colorizer, input_size=PHOTO_INPUT, ab_upsample="bilinear")
    assert levels_apart(bilinear, theirs) > 8


def test_the_network_gives_the_authors_numbers_on_the_same_weights(authors: torch.nn.Module, tiny_network: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(3)
    batch = torch.rand(1, 1, PHOTO_INPUT, PHOTO_INPUT, generator=generator).expand(1, 3, -1, -1).contiguous()
    with torch.inference_mode():
        expected, actual = authors(batch), tiny_network(batch)
    assert float(expected.std()) > 5.0  # a real spread of ab, not a near-constant output
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-4)


def test_with_the_authors_network_the_whole_pipeline_matches(image: np.ndarray, authors: torch.nn.Module, colorizer: Colorizer) -> None:
    theirs = authors_pipeline(image, authors, PHOTO_INPUT)
    assert levels_apart(colorize(image, colorizer, input_size=PHOTO_INPUT, ab_upsample="nearest"), theirs) <= 1


@pytest.mark.slow
def test_at_the_official_input_size_nearest_is_the_authors_pipeline(
    photo_rgb: np.ndarray, colorizer: Colorizer, tiny_network: torch.nn.Module
) -> None:
    theirs = authors_pipeline(photo_rgb, tiny_network, 512)
    assert levels_apart(colorize(photo_rgb, colorizer, ab_upsample="nearest"), theirs) <= 1


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_the_output_keeps_the_size_and_the_lightness_of_the_input(image: np.ndarray, colorizer: Colorizer, mode: str) -> None:
    out = colorize(image, colorizer, input_size=FAST_INPUT, ab_upsample=mode)  # type: ignore[arg-type]
    assert out.shape == image.shape and out.dtype == np.uint8
    # Where the colour fits the gamut, L is the input's to within rounding; where it does not, OpenCV clips RGB.
    in_gamut = ((out > 0) & (out < 255)).all(axis=-1)
    assert in_gamut.mean() > 0.6
    assert np.abs(lightness(out) - lightness(image))[in_gamut].max() <= 100.0 / 255.0
    assert np.abs(cv2.cvtColor(out, cv2.COLOR_RGB2Lab)[:, :, 1:].astype(int) - 128).mean() > 3  # it is coloured


def test_a_portrait_image_stays_portrait(colorizer: Colorizer) -> None:
    tall = np.tile(np.linspace(0, 255, 90, dtype=np.uint8)[:, None, None], (1, 41, 3))
    assert colorize(tall, colorizer, input_size=FAST_INPUT).shape == (90, 41, 3)


def test_gray_images_of_one_channel_are_accepted(colorizer: Colorizer, synthetic_image: np.ndarray) -> None:
    gray = cv2.cvtColor(synthetic_image, cv2.COLOR_RGB2GRAY)
    as_rgb = np.repeat(gray[:, :, None], 3, axis=2)
    expected = colorize(as_rgb, colorizer, input_size=FAST_INPUT)
    assert np.array_equal(colorize(gray, colorizer, input_size=FAST_INPUT), expected)
    assert np.array_equal(colorize(gray[:, :, None], colorizer, input_size=FAST_INPUT), expected)


def test_the_three_steps_compose_to_colorize(colorizer: Colorizer, synthetic_image: np.ndarray) -> None:
    prepared = preprocess(synthetic_image, FAST_INPUT)
    assert prepared.size == synthetic_image.shape[:2]
    assert prepared.batch().shape == (1, 3, FAST_INPUT, FAST_INPUT)
    gray = prepared.gray_rgb
    assert np.allclose(gray[:, :, 0], gray[:, :, 1], atol=1e-6) and np.allclose(gray[:, :, 1], gray[:, :, 2], atol=1e-6)
    ab = colorizer.infer(prepared.batch())
    assert ab.shape == (1, 2, FAST_INPUT, FAST_INPUT) and ab.dtype == np.float32
    assert np.array_equal(postprocess(prepared, ab, "nearest"), colorize(synthetic_image, colorizer, input_size=FAST_INPUT))


def test_bands_change_nothing(colorizer: Colorizer, monkeypatch: pytest.MonkeyPatch) -> None:
    from oldphoto.models.ddcolor import pipeline

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (300, 170, 3), dtype=np.uint8)
    whole = colorize(image, colorizer, input_size=FAST_INPUT)
    monkeypatch.setattr(pipeline, "BAND_ROWS", 7)
    assert np.array_equal(colorize(image, colorizer, input_size=FAST_INPUT), whole)


@pytest.mark.parametrize("size", [48, 100, 500, 0])
def test_an_input_size_the_network_cannot_take_is_refused(size: int, synthetic_image: np.ndarray) -> None:
    with pytest.raises(BadInput, match="multiple of 32"):
        preprocess(synthetic_image, size)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((2, 10, 10, 3), np.uint8),
    ],
)
def test_images_that_are_not_rgb_uint8_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(BadInput):
        preprocess(bad, FAST_INPUT)


def test_an_unknown_upsampling_mode_is_refused(colorizer: Colorizer, synthetic_image: np.ndarray) -> None:
    prepared = preprocess(synthetic_image, FAST_INPUT)
    with pytest.raises(BadInput, match="ab_upsample"):
        postprocess(prepared, np.zeros((1, 2, FAST_INPUT, FAST_INPUT), np.float32), "bicubic")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [64, 256, 512])
@pytest.mark.parametrize("shape", [(1000, 553), (553, 1000), (512, 512), (1024, 1024), (3000, 2017), (100, 77), (7, 5)])
def test_nearest_upsampling_picks_the_pixels_pytorch_picks(size: int, shape: tuple[int, int]) -> None:
    from oldphoto.models.ddcolor.pipeline import upsample_nearest

    small = np.random.default_rng(size).standard_normal((size, size, 2)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(small.transpose(2, 0, 1)[None]), size=shape)[0].numpy().transpose(1, 2, 0)
    assert np.array_equal(upsample_nearest(small, *shape), expected)


def test_bilinear_upsampling_is_pytorchs_to_float_rounding() -> None:
    rng = np.random.default_rng(1)
    small = 40 * rng.standard_normal((1, 2, 64, 64)).astype(np.float32)  # ab of a colourful photo
    prepared = preprocess(rng.integers(60, 200, (1000, 553, 3), dtype=np.uint8), 64)
    full = F.interpolate(torch.from_numpy(small), size=(1000, 553), mode="bilinear", align_corners=False)[0].numpy()
    lab = np.concatenate((prepared.l_full, full.transpose(1, 2, 0)), axis=-1)
    expected = (cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0).round()
    got = postprocess(prepared, small, "bilinear").astype(np.float32)
    assert np.abs(got - expected).max() <= 1  # a level at most, where float rounding tips it
