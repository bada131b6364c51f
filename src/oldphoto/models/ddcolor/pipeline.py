"""The authors' colorization pipeline around the network, as their `ColorizationPipeline.process` does it.

1. The full-resolution image (float32 RGB in 0..1) gives L, in OpenCV's float Lab (L in 0..100).
2. The image resized to the model input (cv2.resize, its default bilinear) gives L only, which becomes a gray
   RGB image (Lab with a = b = 0, back to RGB): the network's input.
3. The network predicts ab at the model input size.
4. ab is resized to the full size and joined with the full-resolution L; Lab to RGB; x255, rounded, uint8.

`ab_upsample="nearest"` is exactly the authors' step 4 (`F.interpolate`'s default mode); `"bilinear"` smooths
the blocky colour edges that nearest leaves when a photo is much larger than the model input (docs/models.md).
The authors work on BGR images; OpenCV's Lab conversions only swap the channel order for RGB, so the numbers are
the same. Full-resolution steps go band by band so a large photo never needs several float copies at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from oldphoto.errors import BadInput
from oldphoto.models.ddcolor.colorizer import Colorizer
from oldphoto.models.ddcolor.progress import BlockCallback
from oldphoto.models.registry import INPUT_MULTIPLE

AbUpsample = Literal["nearest", "bilinear"]
AB_UPSAMPLE_MODES: tuple[str, ...] = ("nearest", "bilinear")
# Rows per band for the full-resolution colour conversions.
BAND_ROWS = 256
# uint8 -> float32 in 0..1 exactly as the authors compute it (`(img / 255.0).astype(np.float32)`).
_UNIT = (np.arange(256) / 255.0).astype(np.float32)


@dataclass(frozen=True)
class Prepared:
    """What preprocessing keeps for the rest of the pipeline."""

    l_full: np.ndarray  # (H, W, 1) float32 L of the full-resolution image
    gray_rgb: np.ndarray  # (S, S, 3) float32 network input: the resized image's L as gray RGB

    @property
    def size(self) -> tuple[int, int]:
        return self.l_full.shape[0], self.l_full.shape[1]

    def batch(self) -> np.ndarray:
        """The network input, (1, 3, S, S) float32."""
        return np.ascontiguousarray(self.gray_rgb.transpose(2, 0, 1)[None], dtype=np.float32)


def preprocess(rgb: np.ndarray, input_size: int) -> Prepared:
    check_input_size(input_size)
    image = _unit_rgb(rgb)
    height = image.shape[0]
    l_full = np.empty((*image.shape[:2], 1), np.float32)
    for top, bottom in _bands(height):
        l_full[top:bottom] = cv2.cvtColor(image[top:bottom], cv2.COLOR_RGB2Lab)[:, :, :1]
    small = cv2.resize(image, (input_size, input_size))
    l_small = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)[:, :, :1]
    zeros = np.zeros_like(l_small)
    gray_rgb = cv2.cvtColor(np.concatenate((l_small, zeros, zeros), axis=-1), cv2.COLOR_LAB2RGB)
    return Prepared(l_full=l_full, gray_rgb=gray_rgb)


def postprocess(prepared: Prepared, ab: np.ndarray, mode: AbUpsample = "nearest") -> np.ndarray:
    """The colour image, RGB uint8 at the input's full size, from the network's ab (1, 2, S, S) and the kept L."""
    height, width = prepared.size
    ab_small = np.ascontiguousarray(np.asarray(ab, dtype=np.float32)[0].transpose(1, 2, 0))
    if mode == "nearest":
        ab_hwc = upsample_nearest(ab_small, height, width)
    elif mode == "bilinear":
        # OpenCV's bilinear on float32 is PyTorch's `align_corners=False` (pixel centres), to float rounding.
        ab_hwc = cv2.resize(ab_small, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        raise BadInput(f"ab_upsample must be one of {', '.join(AB_UPSAMPLE_MODES)}, not {mode!r}.")
    out = np.empty((height, width, 3), np.uint8)
    for top, bottom in _bands(height):
        lab = np.concatenate((prepared.l_full[top:bottom], ab_hwc[top:bottom]), axis=-1)
        # OpenCV clips float Lab->RGB to 0..1, so the cast below never wraps.
        out[top:bottom] = (cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0).round()
    return out


def upsample_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, C) to (height, width, C) with the source pixels PyTorch's `F.interpolate(mode="nearest")` picks: the
    authors' step 4. Not OpenCV's INTER_NEAREST, whose rounding picks other pixels at some sizes."""
    rows = _nearest_sources(image.shape[0], height)
    cols = _nearest_sources(image.shape[1], width)
    return image[rows[:, None], cols[None, :]]


def _nearest_sources(size: int, out: int) -> np.ndarray:
    # PyTorch's CPU kernel: floor(index * (in / out)), all in float32, clamped to the last pixel.
    if out == size:
        return np.arange(out)
    if out == 2 * size:
        return np.arange(out) >> 1
    scale = np.float32(size) / np.float32(out)
    return np.minimum(np.floor(np.arange(out, dtype=np.float32) * scale).astype(np.int64), size - 1)


def colorize(
    rgb: np.ndarray,
    colorizer: Colorizer,
    *,
    input_size: int | None = None,
    ab_upsample: AbUpsample = "nearest",
    on_block: BlockCallback | None = None,
) -> np.ndarray:
    """The whole pipeline in one call (the workflow node runs the three steps itself, to report each)."""
    prepared = preprocess(rgb, input_size or colorizer.native_input_size)
    ab = colorizer.infer(prepared.batch(), on_block=on_block)
    return postprocess(prepared, ab, ab_upsample)


def check_input_size(input_size: int) -> None:
    if input_size < INPUT_MULTIPLE or input_size % INPUT_MULTIPLE:
        raise BadInput(f"The model input size must be a multiple of {INPUT_MULTIPLE} (such as 512), not {input_size}.")


def _unit_rgb(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) as float32 in 0..1; a gray (H, W) or (H, W, 1) image is spread to three channels."""
    if rgb.dtype != np.uint8:
        raise BadInput(f"Images are uint8; this one is {rgb.dtype}.")
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    if rgb.ndim != 3 or rgb.shape[2] not in (1, 3) or 0 in rgb.shape[:2]:
        raise BadInput(f"Images are RGB (height, width, 3); this one has shape {rgb.shape}.")
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return _UNIT[rgb]


def _bands(height: int) -> Iterator[tuple[int, int]]:
    for top in range(0, height, BAND_ROWS):
        yield top, min(height, top + BAND_ROWS)
