"""Turning a decoded Pillow image of any mode into 8-bit RGB plus an optional, separate alpha plane.

The conversion runs band by band into arrays allocated once at their final size, so only Pillow's decoded copy
and the result exist at full size. Converting the whole image first (``np.array(im.convert("RGB"))``) would add
a converted copy and a bytes copy on top: about a third more peak memory for a 40-megapixel upload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

import numpy as np
from PIL import Image

from oldphoto.errors import UnsupportedFormat

# About a million pixels per band: big enough that Pillow's per-call overhead vanishes, small enough that the
# temporary band copies stay a few megabytes.
_BAND_PIXELS = 1 << 20

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Modes Pillow converts to RGB(A) itself, correctly (palette lookup, CMYK and YCbCr maths, 1-bit to 0/255).
_CONVERTIBLE = frozenset({"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV"}) | _ALPHA_MODES
# Modes with more than 8 bits per sample, which Pillow's own convert() would clip instead of scale.
_DEEP = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})

BandWriter = Callable[[Image.Image, np.ndarray, "np.ndarray | None"], None]


def to_rgb_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) uint8 RGB and, when the image has any transparency, (H, W) uint8 alpha."""
    writer, has_alpha = _plan(im)
    width, height = im.size
    rgb = np.empty((height, width, 3), np.uint8)
    alpha = np.empty((height, width), np.uint8) if has_alpha else None
    for top, bottom in _bands(width, height):
        band = im.crop((0, top, width, bottom))
        writer(band, rgb[top:bottom], None if alpha is None else alpha[top:bottom])
    return rgb, alpha


def _plan(im: Image.Image) -> tuple[BandWriter, bool]:
    if im.mode in _DEEP:
        return _deep_gray_writer(im), False
    if im.mode not in _CONVERTIBLE:
        raise UnsupportedFormat(f"This image uses the {im.mode} colour mode, which we cannot convert to RGB.")
    if im.mode in _ALPHA_MODES or im.has_transparency_data:
        return _write_rgba, True
    return _write_rgb, False


def _bands(width: int, height: int) -> Iterator[tuple[int, int]]:
    rows = max(1, _BAND_PIXELS // width)
    for top in range(0, height, rows):
        yield top, min(height, top + rows)


def _write_rgb(band: Image.Image, rgb: np.ndarray, alpha: np.ndarray | None) -> None:
    rgb[:] = np.asarray(band if band.mode == "RGB" else band.convert("RGB"))


def _write_rgba(band: Image.Image, rgb: np.ndarray, alpha: np.ndarray | None) -> None:
    if band.mode == "La":  # premultiplied grey (TIFF associated alpha): Pillow un-premultiplies it only to LA
        band = band.convert("LA")
    # convert("RGBA") applies a palette's or a key colour's transparency and un-premultiplies RGBa.
    pixels = np.asarray(band if band.mode == "RGBA" else band.convert("RGBA"))
    rgb[:] = pixels[..., :3]
    assert alpha is not None  # _plan pairs this writer with an alpha plane
    alpha[:] = pixels[..., 3]


def _deep_gray_writer(im: Image.Image) -> BandWriter:
    """A writer that scales 16-bit, 32-bit or float grey to 8 bits with one scale for the whole image."""
    to_8bit = _deep_scaler(im)

    def write(band: Image.Image, rgb: np.ndarray, alpha: np.ndarray | None) -> None:
        rgb[:] = to_8bit(np.asarray(band))[..., None]

    return write


def _deep_scaler(im: Image.Image) -> Callable[[np.ndarray], np.ndarray]:
    if im.mode.startswith("I;16"):
        return _from_16bit
    # Single-band modes: getextrema() is one (low, high) pair, not one per band.
    _, high = cast("tuple[float, float]", im.getextrema())
    if im.mode == "I":
        # 32-bit integers come from 16-bit sources or from 8-bit data widened; the range tells which.
        return _from_16bit if high > 255 else _clip_8bit
    # Float images are conventionally 0..1; anything brighter is taken as already on the 0..255 scale.
    return _from_unit_float if np.isfinite(high) and high <= 1.0 else _clip_8bit


def _from_16bit(values: np.ndarray) -> np.ndarray:
    # Rounded v * 255 / 65535 (= v / 257): 65535 maps to 255 and 257*k back to k exactly; no clipping.
    wide = np.clip(values, 0, 65535).astype(np.uint32)
    return ((wide + 128) // 257).astype(np.uint8)


def _from_unit_float(values: np.ndarray) -> np.ndarray:
    return _clip_8bit(np.nan_to_num(values, nan=0.0) * 255.0)


def _clip_8bit(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(values, nan=0.0)), 0, 255).astype(np.uint8)
