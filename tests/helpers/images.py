"""Small generated photos for tests and benchmarks."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(width: int = 96, height: int = 64, seed: int = 0) -> bytes:
    """A grey gradient with texture: a plausible old photo at a small size."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 220, width)[None, :] + np.linspace(0, 20, height)[:, None]
    grey = np.clip(ramp + rng.normal(0, 6, (height, width)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, "L").save(buffer, "PNG")
    return buffer.getvalue()
