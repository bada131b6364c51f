from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from oldphoto.engine.context import NodeContext
from oldphoto.engine.nodes.bands import reported_bands
from oldphoto.engine.nodes.base import Node

if TYPE_CHECKING:
    import numpy as np

# Rows per band: progress and cancel come once per band; ~0.25 s each for a 1000-pixel-wide photo on 2 cores.
BAND_ROWS = 256


class DenoiseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # OpenCV's filter strength `h`: 3 is gentle, 10 is strong; 0 leaves the photo as it is.
    strength: float = Field(5.0, ge=0.0, le=30.0)
    template_window: int = Field(7, ge=3, le=21)
    search_window: int = Field(21, ge=5, le=45)


class Denoise(Node):
    """Non-local means (OpenCV), run in horizontal bands so progress and cancel work on large photos."""

    type_name = "Denoise"
    source = "denoise"
    weight = 2.0
    Options = DenoiseOptions
    widget_fields = ("strength",)
    options: DenoiseOptions

    def run(self, ctx: NodeContext, *, image: np.ndarray) -> tuple[np.ndarray]:
        opts = self.options
        ctx.report.stage("preprocess")
        if opts.strength == 0:
            ctx.report.stage("postprocess")
            return (image,)
        ctx.report.stage("inference", strength=opts.strength)
        # Each band is filtered with a margin of the search window plus the patch, so the pixels kept from it are
        # exactly those of a whole-image pass (every patch they compare lies inside the band).
        margin = opts.search_window // 2 + opts.template_window // 2
        out = reported_bands(ctx, image, self._filter, rows=BAND_ROWS, margin=margin)
        ctx.report.stage("postprocess")
        return (out,)

    def _filter(self, rgb: np.ndarray) -> np.ndarray:
        # Imported here, in a worker: the web process imports every node and loads neither (engine/nodes/__init__.py).
        import cv2
        import numpy as np

        opts = self.options
        # OpenCV expects BGR: it splits luminance from colour in Lab, which needs the channels in its order.
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
        denoised = cv2.fastNlMeansDenoisingColored(bgr, None, opts.strength, opts.strength, opts.template_window, opts.search_window)
        return cv2.cvtColor(denoised, cv2.COLOR_BGR2RGB)
