from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from oldphoto.engine.context import NodeContext
from oldphoto.engine.nodes.bands import reported_bands
from oldphoto.engine.nodes.base import Node

if TYPE_CHECKING:
    import numpy as np

# Rows per band: progress and cancel come once per band.
BAND_ROWS = 512


class SharpenOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: float = Field(0.6, ge=0.0, le=5.0)
    radius: float = Field(1.5, gt=0.0, le=20.0)
    # Differences below this (0..255) are left alone, so flat areas and film grain are not amplified.
    threshold: int = Field(2, ge=0, le=255)


class Sharpen(Node):
    """Unsharp mask: image + amount * (image - blur(image)), skipped where the difference is below threshold."""

    type_name = "Sharpen"
    source = "sharpen"
    weight = 0.5
    Options = SharpenOptions
    widget_fields = ("amount", "radius", "threshold")
    options: SharpenOptions

    def run(self, ctx: NodeContext, *, image: np.ndarray) -> tuple[np.ndarray]:
        ctx.report.stage("preprocess")
        ctx.report.stage("inference", amount=self.options.amount)
        # Bands keep the float copies small on an upscaled photo and let cancel in between. A band borrows the
        # blur kernel's reach (OpenCV sizes a float Gaussian to 4 sigma per side) so its seams match a whole pass.
        margin = math.ceil(4 * self.options.radius) + 1
        out = reported_bands(ctx, image, self._sharpen, rows=BAND_ROWS, margin=margin)
        ctx.report.stage("postprocess")
        return (out,)

    def _sharpen(self, rgb: np.ndarray) -> np.ndarray:
        # Imported here, in a worker: the web process imports every node and loads neither (engine/nodes/__init__.py).
        import cv2
        import numpy as np

        opts = self.options
        pixels = rgb.astype(np.float32)
        detail = pixels - cv2.GaussianBlur(pixels, (0, 0), opts.radius)
        # One decision per pixel (its strongest channel), so a colour edge is sharpened in all channels alike
        # instead of in some only, which would shift its hue.
        mask = np.abs(detail).max(axis=2, keepdims=True) >= opts.threshold
        sharpened = np.where(mask, pixels + opts.amount * detail, pixels)
        return np.clip(np.rint(sharpened), 0, 255).astype(np.uint8)
