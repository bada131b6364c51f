from __future__ import annotations

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from oldphoto.engine.context import NodeContext
from oldphoto.engine.nodes.base import Node


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
        opts = self.options
        ctx.report.stage("preprocess")
        ctx.report.stage("inference", amount=opts.amount)
        pixels = image.astype(np.float32)
        blurred = cv2.GaussianBlur(pixels, (0, 0), opts.radius)
        detail = pixels - blurred
        mask = np.abs(detail) >= opts.threshold
        sharpened = np.where(mask, pixels + opts.amount * detail, pixels)
        ctx.report.stage("postprocess")
        return (np.clip(np.rint(sharpened), 0, 255).astype(np.uint8),)
