"""EXIF orientation: reading the tag and turning pixel arrays upright.

Cameras store the sensor's rows as they came and note the rotation in the Orientation tag (274); a photo shown
without applying it lies on its side or appears mirrored. The eight values are the eight symmetries of a
rectangle; each is applied here as a numpy view followed by one contiguous copy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112

# Value -> how to turn the stored array (rows, columns, ...) upright. Names follow Pillow's Transpose.
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: a.swapaxes(0, 1)[:, ::-1],  # needs 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed
    8: lambda a: a.swapaxes(0, 1)[::-1],  # needs 90 degrees counter-clockwise
}


def read_orientation(im: Image.Image) -> int:
    """The image's EXIF orientation, 1 (as stored) when absent, unreadable or out of range."""
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # metadata is advisory: broken EXIF must not cost the user the photo
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """`pixels` (H, W) or (H, W, C) turned upright; the same array when nothing needs doing."""
    if orientation == 1:
        return pixels
    return np.ascontiguousarray(_UPRIGHT[orientation](pixels))
