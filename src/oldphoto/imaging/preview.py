"""Small pictures of work in progress: shrinking into a bounded box, and JPEG bytes of them.

OpenCV and numpy are imported by the functions that use them: the engine imports this module in the web process too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Quality 80 keeps a 256 px preview near 10-20 kB; a preview is looked at for half a second.
JPEG_QUALITY = 80


def fitted_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) of a picture of this shape at most `max_side` on its long side (never enlarged)."""
    scale = min(1.0, max_side / max(height, width, 1))
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """`rgb` resized to exactly height x width (area averaging: no aliasing when it gets smaller)."""
    import cv2
    import numpy as np

    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=cv2.INTER_AREA)


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Baseline JPEG bytes of an (H, W, 3) uint8 RGB picture."""
    import cv2
    import numpy as np

    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the JPEG")
    return buffer.tobytes()
