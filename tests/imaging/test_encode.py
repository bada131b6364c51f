"""Encoding results: exact PNG round trips, alpha put back at the right size, atomic writes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from oldphoto.imaging import decode_file, decode_image, encode_png, save_png, sniff_format
from oldphoto.imaging import encode as encode_module


def noise(height: int, width: int, channels: int | None = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels is None else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


def png_colour_type(data: bytes) -> int:
    # IHDR: 8-byte signature, 8-byte chunk header, width, height, bit depth, then the colour type.
    return data[25]


def decode(data: bytes):  # noqa: ANN201 - DecodedImage, kept short
    return decode_image(data, max_pixels=10**8)


def test_rgb_round_trips_exactly_as_an_rgb_png() -> None:
    rgb = noise(37, 53)
    data = encode_png(rgb)
    assert sniff_format(data) == "png" and png_colour_type(data) == 2
    image = decode(data)
    assert image.alpha is None and np.array_equal(image.rgb, rgb)


def test_alpha_round_trips_exactly_as_an_rgba_png() -> None:
    rgb, alpha = noise(20, 30, seed=1), noise(20, 30, None, seed=2)
    data = encode_png(rgb, alpha)
    assert png_colour_type(data) == 6
    image = decode(data)
    assert np.array_equal(image.rgb, rgb) and np.array_equal(image.alpha, alpha)


def test_alpha_of_another_size_is_resized_linearly_to_the_colours() -> None:
    # An upscale step doubled the colours; the alpha plane is still at the input size.
    rgb = noise(40, 60, seed=3)
    alpha = np.tile(np.linspace(0, 255, 30).astype(np.uint8), (20, 1))
    image = decode(encode_png(rgb, alpha))
    expected = cv2.resize(alpha, (60, 40), interpolation=cv2.INTER_LINEAR)
    assert image.alpha.shape == (40, 60) and np.array_equal(image.alpha, expected)
    assert np.array_equal(image.rgb, rgb)
    # Linear, not nearest: a doubled ramp gains values the small plane never had.
    assert len(np.unique(image.alpha[0])) > len(np.unique(alpha[0]))


def test_flat_alpha_stays_flat_when_resized() -> None:
    image = decode(encode_png(noise(33, 17), np.full((5, 3), 200, np.uint8)))
    assert image.alpha.shape == (33, 17) and set(np.unique(image.alpha)) == {200}


def test_views_with_negative_strides_are_encoded_as_they_look() -> None:
    rgb, alpha = noise(12, 9, seed=4), noise(12, 9, None, seed=5)
    image = decode(encode_png(rgb[::-1, ::-1], alpha[:, ::-1]))
    assert np.array_equal(image.rgb, rgb[::-1, ::-1]) and np.array_equal(image.alpha, alpha[:, ::-1])


@pytest.mark.parametrize(
    ("rgb", "alpha", "error"),
    [
        (np.zeros((4, 4, 3), np.float32), None, TypeError),
        ([[[0, 0, 0]]], None, TypeError),
        (np.zeros((4, 4), np.uint8), None, ValueError),
        (np.zeros((4, 4, 4), np.uint8), None, ValueError),
        (np.zeros((0, 4, 3), np.uint8), None, ValueError),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 1), np.uint8), ValueError),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint16), TypeError),
    ],
    ids=["float", "list", "grey", "four_channels", "empty", "alpha_3d", "alpha_16bit"],
)
def test_bad_arrays_are_refused_with_a_clear_error(rgb: object, alpha: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"rgb|alpha"):
        encode_png(rgb, alpha)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(3))), st.booleans())
def test_any_image_round_trips(rgb: np.ndarray, with_alpha: bool) -> None:
    alpha = rgb[..., 1].copy() if with_alpha else None
    image = decode(encode_png(rgb, alpha))
    assert np.array_equal(image.rgb, rgb)
    assert (image.alpha is None) == (alpha is None) and (alpha is None or np.array_equal(image.alpha, alpha))


# ------------------------------------------------------------------------------------------ atomic saving


def test_save_png_writes_a_file_that_decodes_to_the_same_pixels(tmp_path: Path) -> None:
    rgb, alpha = noise(10, 14, seed=6), noise(10, 14, None, seed=7)
    target = tmp_path / "result.png"
    save_png(str(target), rgb, alpha)
    image = decode_file(target, max_pixels=10**6)
    assert np.array_equal(image.rgb, rgb) and np.array_equal(image.alpha, alpha)
    assert os.listdir(tmp_path) == ["result.png"]


def test_save_png_replaces_an_existing_result(tmp_path: Path) -> None:
    target = tmp_path / "result.png"
    target.write_bytes(b"old")
    save_png(target, noise(3, 3))
    assert target.read_bytes().startswith(b"\x89PNG") and os.listdir(tmp_path) == ["result.png"]


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "result.png"
    target.write_bytes(b"previous result")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(encode_module.os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_png(target, noise(3, 3))
    assert target.read_bytes() == b"previous result" and os.listdir(tmp_path) == ["result.png"]


def test_an_unencodable_image_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_png(tmp_path / "result.png", np.zeros((4, 4), np.uint8))
    assert os.listdir(tmp_path) == []


def test_saved_files_get_normal_permissions(tmp_path: Path) -> None:
    # Created like any file (mode 666 less the umask), not with a temporary file's private 600.
    previous = os.umask(0o022)
    try:
        save_png(tmp_path / "result.png", noise(2, 2))
    finally:
        os.umask(previous)
    assert (tmp_path / "result.png").stat().st_mode & 0o777 == 0o644


def test_encode_is_reasonably_compact() -> None:
    # Flat areas must compress: a 1000x1000 grey frame is a few kilobytes, not 3 MB.
    data = encode_png(np.full((1000, 1000, 3), 128, np.uint8))
    assert len(data) < 20_000
    assert struct.unpack(">II", data[16:24]) == (1000, 1000)
