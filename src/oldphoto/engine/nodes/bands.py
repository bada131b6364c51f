from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def in_bands(
    image: np.ndarray,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    rows: int,
    margin: int,
    after_band: Callable[[float], None],
) -> np.ndarray:
    """`transform` over horizontal bands of `rows` rows, each given `margin` rows of context above and below.

    For a filter that reaches no farther than `margin` rows, the result equals one pass over the whole image, while
    memory stays that of a band and `after_band(fraction done)` (progress, and the cancel check in it) runs between.
    """
    import numpy as np  # in a worker only (engine/nodes/__init__.py)

    out = np.empty_like(image)
    height = image.shape[0]
    tops = range(0, height, rows)
    for i, top in enumerate(tops):
        lo, hi = max(0, top - margin), min(height, top + rows + margin)
        bottom = min(height, top + rows)
        out[top:bottom] = transform(image[lo:hi])[top - lo : bottom - lo]
        after_band((i + 1) / len(tops))
    return out
