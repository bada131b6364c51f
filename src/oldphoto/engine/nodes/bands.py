from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oldphoto.engine.context import NodeContext
from oldphoto.engine.previews import Canvas

if TYPE_CHECKING:
    import numpy as np


def in_bands(
    image: np.ndarray,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    rows: int,
    margin: int,
    after_band: Callable[[int, int], None],
    landed: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """`transform` over horizontal bands of `rows` rows, each given `margin` rows of context above and below.

    For a filter that reaches no farther than `margin` rows, the result equals one pass over the whole image, while
    memory stays that of a band and `after_band(bands done, bands)` (progress, and the cancel check in it) runs between.
    `landed(top, rows out)` sees each band's result first.
    """
    import numpy as np  # in a worker only (engine/nodes/__init__.py)

    out = np.empty_like(image)
    height = image.shape[0]
    tops = range(0, height, rows)
    for i, top in enumerate(tops):
        lo, hi = max(0, top - margin), min(height, top + rows + margin)
        bottom = min(height, top + rows)
        out[top:bottom] = transform(image[lo:hi])[top - lo : bottom - lo]
        if landed is not None:
            landed(top, out[top:bottom])
        after_band(i + 1, len(tops))
    return out


def reported_bands(
    ctx: NodeContext, image: np.ndarray, transform: Callable[[np.ndarray], np.ndarray], *, rows: int, margin: int
) -> np.ndarray:
    """`in_bands` with the node's progress after each band and, where previews are wanted, its preview: the rows
    done so far over the rows still to do."""
    report, previews = ctx.report, ctx.previews

    def counted(done: int, total: int) -> None:
        report.count(done, total, "band")

    if not previews.wanted:
        return in_bands(image, transform, rows=rows, margin=margin, after_band=counted)
    canvas = Canvas(image, image.shape[0], image.shape[1])

    def after_band(done: int, total: int) -> None:
        counted(done, total)
        previews.offer(report, canvas.picture)

    return in_bands(image, transform, rows=rows, margin=margin, after_band=after_band, landed=lambda top, band: canvas.paste(top, 0, band))
