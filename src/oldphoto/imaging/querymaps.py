"""Pictures of DDColor's colour queries (models/ddcolor/lens.py): the dominance map, each pixel in the colour of the
query that dominates it, and the response maps of the queries that matter most, as PNGs with their index
(docs/protocol.md, "Colour queries").

A query's colour is where its push (its a/b direction) leads from a mid grey: Lab with a fixed lightness and a fixed
chroma, so every query is drawn as visibly as the next (its share says how much it counts). Response maps are
grayscale: black is no contribution, white the map's largest (`max_ab` in the index, in ab units).

numpy and OpenCV are imported by the functions, not with this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from oldphoto.models.ddcolor.lens import QueryReading

LIGHTNESS = 65.0
CHROMA = 55.0
DOMINANCE = "dominance"
# The maps are drawn in the photo's shape (the network saw it squeezed into a square), at most this long: laid over
# the result they then cover it exactly. Nearest neighbour: each pixel stays one query's colour, one sample's value.
MAX_SIDE = 256


@dataclass(frozen=True)
class QueryMaps:
    """What a colorize node hands out: the index (JSON-able: the queries shown, the map's size) and the PNGs by name."""

    index: dict[str, Any]
    images: dict[str, bytes] = field(default_factory=dict)


def push_colours(push: np.ndarray) -> np.ndarray:
    """sRGB (Q, 3) uint8 of each query's push (2, Q): its a/b direction at LIGHTNESS and CHROMA (grey if it has none)."""
    import cv2
    import numpy as np

    ab = np.asarray(push, dtype=np.float32).T  # (Q, 2)
    length = np.linalg.norm(ab, axis=1, keepdims=True)
    direction = np.divide(ab, length, out=np.zeros_like(ab), where=length > 0)
    lab = np.concatenate([np.full((ab.shape[0], 1), LIGHTNESS, np.float32), direction * CHROMA], axis=1)
    rgb = cv2.cvtColor(lab[None].astype(np.float32), cv2.COLOR_Lab2RGB)[0]
    return np.asarray((rgb * 255.0).round().clip(0, 255), dtype=np.uint8)


def draw(reading: QueryReading, sub_pixel: tuple[int, int], photo: tuple[int, int]) -> QueryMaps:
    """The maps of a reading, in the shape of the photo (height, width), at most MAX_SIDE on their long side."""
    import cv2
    import numpy as np

    from oldphoto.imaging.encode import encode_png
    from oldphoto.imaging.preview import fitted_size

    colours = push_colours(reading.push)
    grid = reading.dominant.shape
    height, width = fitted_size(*photo, MAX_SIDE)

    def fit(image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST))

    images = {DOMINANCE: encode_png(fit(colours[reading.dominant]))}
    queries = []
    for query, contribution in zip(reading.top, reading.maps, strict=True):
        peak = float(contribution.max())
        grey = (contribution / peak * 255.0).round().astype(np.uint8) if peak > 0 else np.zeros(grid, np.uint8)
        name = f"query-{query}"
        images[name] = encode_png(fit(np.repeat(grey[:, :, None], 3, axis=2)))
        queries.append(
            {
                "index": query,
                "push": [round(float(v), 5) for v in reading.push[:, query]],
                "rgb": [int(v) for v in colours[query]],
                "share": round(float(reading.share[query]), 5),
                "dominates": round(float(reading.dominates[query]), 5),
                "max_ab": round(peak, 4),
                "map": name,
            }
        )
    index = {
        "width": width,
        "height": height,
        "grid": [grid[1], grid[0]],  # the lens's own resolution (width, height): the model input's quarter
        "sub_pixel": list(sub_pixel),
        "dominance": DOMINANCE,
        "queries": queries,
    }
    return QueryMaps(index, images)
