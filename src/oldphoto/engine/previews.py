"""Live previews: what a running job looks like so far, as small JPEG pictures (docs/protocol.md, "Previews").

Nodes offer a picture whenever theirs changes (a tile or a band landed, the network ended). `Previews` lets one
through at most every `MIN_GAP_S` per run, and only then makes it (shrunk to `MAX_SIDE`, encoded), so an offer that
is turned away costs nothing. The engine says what the picture is; the job system keeps its bytes and says where.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from oldphoto.engine.reporter import NodeReporter
from oldphoto.protocol import Note, PreviewImage

if TYPE_CHECKING:
    import numpy as np

PreviewSink = Callable[[Note, bytes], None]
MAX_SIDE = 256
# At most two a second per job: a person sees the picture fill in, and the log and the store hear little of it.
MIN_GAP_S = 0.5


class Previews:
    """One run's previews; without a sink (the terminal's `restore`), none are made."""

    def __init__(
        self,
        sink: PreviewSink | None = None,
        *,
        min_gap_s: float = MIN_GAP_S,
        max_side: int = MAX_SIDE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.min_gap_s = min_gap_s
        self.max_side = max_side
        self.clock = clock
        self.frames = 0
        self.last_sent = -math.inf

    @property
    def wanted(self) -> bool:
        return self.sink is not None

    def offer(self, report: NodeReporter, picture: Callable[[], np.ndarray]) -> bool:
        """Send `picture()` (RGB uint8, any size) as the job's latest preview when one is due; True if it went."""
        if self.sink is None or self.clock() - self.last_sent < self.min_gap_s:
            return False
        from oldphoto.imaging.preview import encode_jpeg, fitted_size, shrink

        image = picture()
        height, width = fitted_size(image.shape[0], image.shape[1], self.max_side)
        data = encode_jpeg(shrink(image, height, width))
        self.frames += 1
        self.last_sent = self.clock()
        self.sink(self._note(report, height, width), data)
        return True

    def _note(self, report: NodeReporter, height: int, width: int) -> Note:
        # The stage's own sentence and the job's progress so far: a preview moves neither, and the job's row (which
        # repeats its latest event) keeps saying what the job is doing.
        return Note(
            type="preview",
            stage=report.current,
            source=report.source,
            node=report.node_id,
            message_key=report.stage_key,
            message_params=report.stage_params,
            progress=report.run.progress,
            preview=PreviewImage(width=width, height=height, frame=self.frames),
        )


class Canvas:
    """A small copy of an image of `height` x `width` being made piece by piece. It starts as `start` (the step's
    input, of the same shape at any size) and each piece is shrunk into its place as it lands, so the copy fills in."""

    def __init__(self, start: np.ndarray, height: int, width: int, max_side: int = MAX_SIDE) -> None:
        from oldphoto.imaging.preview import fitted_size, shrink

        self.height, self.width = height, width
        self.size = fitted_size(height, width, max_side)
        self.pixels = shrink(start, *self.size).copy()  # never the caller's array itself

    def paste(self, top: int, left: int, piece: np.ndarray) -> None:
        """`piece` landed at (top, left) of the full image."""
        from oldphoto.imaging.preview import shrink

        h, w = self.size
        # Floors on both edges: pieces side by side fill the canvas without gaps or overlaps.
        y0, y1 = top * h // self.height, (top + piece.shape[0]) * h // self.height
        x0, x1 = left * w // self.width, (left + piece.shape[1]) * w // self.width
        if y1 > y0 and x1 > x0:
            self.pixels[y0:y1, x0:x1] = shrink(piece, y1 - y0, x1 - x0)

    def picture(self) -> np.ndarray:
        return self.pixels
