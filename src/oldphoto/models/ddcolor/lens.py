"""The query lens: which of DDColor's colour queries made the colours of a photo, and where (docs/protocol.md,
"Colour queries").

DDColor's colour decoder ends with 100 learned queries, each a colour embedding E_q (256 numbers). The network
multiplies each with the full-resolution feature map that `last_shuf` makes from the decoder's `out2`, giving one
response map per query, and `refine_net` (a 1x1 convolution) turns the 100 maps (and the input) into a and b: query
q adds R_q * r_q(p) to the ab of pixel p, R_q being refine_net's weight column for it (a 2-vector, its "push").

The full product costs `last_shuf`'s whole convolution again (16 x 256 output channels: ~17 GMAC at 512 px), so the
lens samples it exactly at ONE of the 16 sub-pixel positions of each quarter-resolution pixel (`SUB_PIXEL`), before
`last_shuf`'s 2x2 blur: one 256 x 256 block of that convolution plus the 100 x 256 product, ~1.5 GMAC at 512 px
(`segments.QueryLens`; benchmarks/attention_cost.py measures it). From those responses (Q, S/4, S/4):

- a query's contribution at p is |R_q| * |r_q(p)| (ab units); the pixel's dominant query has the largest;
- a query's share is its contribution summed over the picture, over the sum of all of them; the top `TOP` by share
  are "the queries that matter most";
- the colour a query pushes towards is R_q, turned round where its responses are negative on the whole
  (sign of their sum): the a/b direction it moves this photo's colours in.

Torch-free: the ONNX runtime hands the same responses out of an exported lens graph (`LENS_FILE`, `LENS_INDEX`),
made beside the segments the first time a lens is wanted (`export.export_lens`), never when it is off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# (row, column) of the sampled sub-pixel in each 4 x 4 block of the full-resolution map: away from the block's top and
# left edges (where last_shuf's blur reaches into the neighbouring block), row and column unequal so that a swapped
# index cannot pass the tests.
SUB_PIXEL = (2, 1)
TOP = 6
# The lens's output in the runtimes' values (batch first, so it loses rows with the batch).
LENS_VALUE = "lens"
LENS_FILE = "lens.onnx"
LENS_INDEX = "lens.json"  # written last: its presence says the lens graph is whole


@dataclass(frozen=True)
class QueryResponses:
    """A batch's responses (B, Q, h, w) float32 at the sub-pixel, and refine_net's push of each query (2, Q)."""

    responses: np.ndarray
    push: np.ndarray
    sub_pixel: tuple[int, int] = SUB_PIXEL


@dataclass(frozen=True)
class QueryReading:
    """What the lens says of one image: the dominant query of each pixel, and every query's weight in the picture."""

    dominant: np.ndarray  # (h, w) int: the index of each pixel's dominant query
    share: np.ndarray  # (Q,) its share of all contributions, summing to 1
    dominates: np.ndarray  # (Q,) the fraction of pixels where it dominates
    push: np.ndarray  # (2, Q) the a/b it pushes towards in this photo (R_q, signed by its responses)
    top: tuple[int, ...]  # the TOP queries by share, largest first
    maps: np.ndarray  # (len(top), h, w) float32: their contributions |R_q| |r_q(p)| in ab units


def read(lens: QueryResponses, row: int = 0, top: int = TOP) -> QueryReading:
    """What the lens says of the batch's image `row`."""
    responses = np.asarray(lens.responses[row], dtype=np.float32)
    push = np.asarray(lens.push, dtype=np.float32)
    strength = np.linalg.norm(push, axis=0)  # (Q,)
    contribution = np.abs(responses)  # (Q, h, w); scaled in place: 100 maps are 105 MB at a 2048 px input
    contribution *= strength[:, None, None]
    dominant = contribution.argmax(axis=0)
    totals = contribution.reshape(contribution.shape[0], -1).sum(axis=1, dtype=np.float64)
    share = totals / totals.sum() if totals.sum() > 0 else np.zeros_like(totals)
    dominates = np.bincount(dominant.ravel(), minlength=responses.shape[0]) / dominant.size
    sign = np.where(responses.reshape(responses.shape[0], -1).sum(axis=1, dtype=np.float64) < 0, -1.0, 1.0)
    order = tuple(int(q) for q in np.argsort(-share, kind="stable")[:top])
    return QueryReading(
        dominant=dominant,
        share=share,
        dominates=dominates,
        push=(push * sign[None, :]).astype(np.float32),
        top=order,
        maps=contribution[list(order)],
    )


def row_of(lens: QueryResponses, row: int) -> QueryResponses:
    """One image of a batch, as a batch of one (its own copy: the batch's arrays are let go)."""
    return QueryResponses(lens.responses[row : row + 1].copy(), lens.push, lens.sub_pixel)


# --- the exported lens (ONNX), beside the segments ---------------------------------------------------------------


def read_index(folder: Path) -> dict[str, Any] | None:
    """The exported lens's index (its inputs, the push, the sub-pixel), or None when there is no whole lens there."""
    try:
        index = json.loads((folder / LENS_INDEX).read_text())
    except (OSError, ValueError):
        return None
    if not (folder / LENS_FILE).is_file() or tuple(index.get("sub_pixel", ())) != SUB_PIXEL:
        return None
    return dict(index)
