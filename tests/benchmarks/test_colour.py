"""The colour difference the precision benchmarks judge by: scikit-image's CIEDE2000 against the published test
pairs of Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes, supplementary
test data, and mathematical observations", Table 1, and the RGB wrapper of benchmarks/_colour.py around it."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks._colour import delta_e00, difference

# (pair number in the table, Lab 1, Lab 2, ΔE00), chosen to cover the formula's corners: the blue region's hue
# rotation (1-3), a neutral against a chromatic colour (7), the hue discontinuity at 180 degrees (9-11), large
# differences (17, 19), the ΔE00 = 1 pairs (21, 22), and near-black and near-white pairs (35, 37, 38).
SHARMA = [
    (1, (50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    (2, (50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    (3, (50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    (7, (50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    (9, (50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    (11, (50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    (17, (50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    (19, (50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    (21, (50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    (22, (50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    (35, (90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    (37, (6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    (38, (2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.mark.parametrize(("number", "lab1", "lab2", "expected"), SHARMA, ids=[f"pair{p[0]}" for p in SHARMA])
def test_ciede2000_matches_the_published_pairs(number: int, lab1: tuple[float, ...], lab2: tuple[float, ...], expected: float) -> None:
    from skimage.color import deltaE_ciede2000

    assert deltaE_ciede2000(np.array(lab1), np.array(lab2)) == pytest.approx(expected, abs=1e-4)
    assert deltaE_ciede2000(np.array(lab2), np.array(lab1)) == pytest.approx(expected, abs=1e-4)  # symmetric


def test_the_rgb_wrapper_measures_what_a_person_sees() -> None:
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    same = difference(image, image.copy())
    assert same.mean == same.p99 == same.max == 0.0
    nudged = image.copy()
    nudged[0, 0] = np.clip(nudged[0, 0].astype(int) + 1, 0, 255)  # one RGB level on one pixel: well under 1
    assert 0 < delta_e00(image, nudged).max() < 1.0
    grey, red = np.full((1, 1, 3), 128, np.uint8), np.array([[[200, 60, 60]]], np.uint8)
    assert delta_e00(grey, red)[0, 0] > 20  # a grey against a red: far apart
    spread = difference(grey.repeat(100, 1), np.concatenate([red, grey.repeat(99, 1)], axis=1))
    assert spread.max > 20 and spread.mean == pytest.approx(spread.max / 100) and spread.p99 < spread.max
    assert spread.within(1.0, 2.5) and not spread.within(1.0, 0.2) and not spread.within(0.2, 2.5)
    with pytest.raises(ValueError, match="shape"):
        delta_e00(image, image[:10])
