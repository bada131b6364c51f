"""Colour differences as a person sees them: CIEDE2000 (ΔE00) between two RGB photos, with scikit-image's
`deltaE_ciede2000` (Sharma, Wu and Dalal 2005; tests/benchmarks/test_colour.py checks it against their table).

ΔE00 of about 1 is the smallest difference an observer notices side by side; 2-3 is noticeable on a close look.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Difference:
    mean: float
    p99: float
    max: float

    def within(self, mean_limit: float, p99_limit: float) -> bool:
        return self.mean < mean_limit and self.p99 < p99_limit


def delta_e00(rgb_a: np.ndarray, rgb_b: np.ndarray) -> np.ndarray:
    """ΔE00 per pixel between two sRGB uint8 images (H, W, 3) of one size (D65, as sRGB is defined)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    if rgb_a.shape != rgb_b.shape:
        raise ValueError(f"the images differ in shape: {rgb_a.shape} and {rgb_b.shape}")
    return deltaE_ciede2000(rgb2lab(rgb_a), rgb2lab(rgb_b))


def difference(rgb_a: np.ndarray, rgb_b: np.ndarray) -> Difference:
    """Mean, 99th percentile and largest ΔE00 over the pixels."""
    de = delta_e00(rgb_a, rgb_b).ravel()
    return Difference(mean=float(de.mean()), p99=float(np.percentile(de, 99)), max=float(de.max()))
