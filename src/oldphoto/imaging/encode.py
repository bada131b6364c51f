"""Encoding results as PNG, and writing them so that a reader never sees half a file.

OpenCV and numpy are imported by the functions that encode, not with this module: the web process writes files with
`write_atomic` and must load neither.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# zlib level 3 writes files about half the size of OpenCV's default (1) for a few milliseconds more per
# megapixel; levels above it cost two to three times the time for almost nothing on photographs.
PNG_COMPRESSION = 3


def encode_png(rgb: np.ndarray, alpha: np.ndarray | None = None) -> bytes:
    """PNG bytes of `rgb` (H, W, 3) uint8 and, when given, `alpha` (h, w) uint8, resized to H x W if needed."""
    import cv2
    import numpy as np

    _check_plane(rgb, "rgb", ndim=3)
    # OpenCV refuses views with negative strides (a flipped array); this copies only such views.
    rgb = np.ascontiguousarray(rgb)
    if alpha is None:
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    else:
        _check_plane(alpha, "alpha", ndim=2)
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
        pixels[..., 3] = fit_alpha(np.ascontiguousarray(alpha), rgb.shape[1], rgb.shape[0])
    ok, buffer = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG")
    return buffer.tobytes()


def save_png(path: str | os.PathLike[str], rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Write a PNG atomically: readers see the old file or the whole new one, never a partial write."""
    write_atomic(Path(path), encode_png(rgb, alpha))


def fit_alpha(alpha: np.ndarray, width: int, height: int) -> np.ndarray:
    """Alpha at width x height: a step that upscaled the colours left the transparency at its old size."""
    if alpha.shape == (height, width):
        return alpha
    import cv2

    return cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)


def write_atomic(path: Path, data: bytes) -> None:
    """Write into a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    # Same folder, so the rename stays on one filesystem and is atomic; a random name, so concurrent
    # writers of the same result never share a temporary; created like a normal file, so the umask applies.
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _check_plane(array: np.ndarray, name: str, *, ndim: int) -> None:
    import numpy as np

    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise TypeError(f"{name} must be a uint8 numpy array")
    if array.ndim != ndim or (ndim == 3 and array.shape[2] != 3) or 0 in array.shape:
        shape = "(H, W, 3)" if ndim == 3 else "(H, W)"
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
