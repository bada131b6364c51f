from __future__ import annotations

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from oldphoto.engine.context import NodeContext
from oldphoto.engine.nodes.base import Node


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
        out = np.empty_like(image)
        height = image.shape[0]
        band = 256
        # Each band is filtered with a margin of the search window, so the seams match the whole-image result.
        margin = opts.search_window // 2 + opts.template_window // 2
        bands = range(0, height, band)
        for i, top in enumerate(bands):
            lo, hi = max(0, top - margin), min(height, top + band + margin)
            filtered = cv2.fastNlMeansDenoisingColored(
                np.ascontiguousarray(image[lo:hi]), None, opts.strength, opts.strength, opts.template_window, opts.search_window
            )
            out[top : min(height, top + band)] = filtered[top - lo : top - lo + min(band, height - top)]
            ctx.report.step((i + 1) / len(bands))
        ctx.report.stage("postprocess")
        return (out,)
