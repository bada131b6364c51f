from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from oldphoto.engine.previews import Previews
from oldphoto.engine.reporter import NodeReporter

if TYPE_CHECKING:
    import numpy as np

    from oldphoto.imaging.querymaps import QueryMaps

# Where a colorize node hands its colour-query maps (imaging/querymaps.py); the job system decides where they go.
QueryMapsSink = Callable[["QueryMaps"], None]


def default_models_dir() -> Path:
    return Path("~/.cache/oldphoto/models").expanduser()


@dataclass(frozen=True)
class RunOptions:
    """Defaults a run gives its nodes; a node's own widgets or params override them."""

    model: str = "ddcolor_paper_tiny"
    models_dir: Path = field(default_factory=default_models_dir)
    device: str = "auto"
    input_size: int = 512
    ab_upsample: Literal["nearest", "bilinear"] = "bilinear"
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    # DDColor's number format (OLDPHOTO_PRECISION, `restore --precision`): faithful (float32) or fast.
    precision: Literal["faithful", "fast"] = "faithful"
    # Colorize jobs running at once in one worker share forward passes of up to batch_max images, gathered for up
    # to batch_wait_ms (1: each job makes its own pass).
    batch_max: int = 1
    batch_wait_ms: float = 20.0
    # CPU threads one net may use (Real-ESRGAN's ncnn), from how many jobs run at once on the machine. None: a worker
    # process puts its share of the cores here (jobs/workers.py); elsewhere, all of this machine's cores, for one job.
    threads: int | None = None
    # DDColor's exported ONNX graphs under <models_dir>/.oldphoto-runtime are held to this many MB (least recently used
    # removed first; OLDPHOTO_RUNTIME_CACHE_MB).
    runtime_cache_mb: int = 4096
    # DDColor's colour queries made visible beside the result (OLDPHOTO_ATTENTION; models/ddcolor/lens.py). Off: the
    # lens is neither exported, nor run, nor kept.
    attention: bool = True


@dataclass
class NodeContext:
    report: NodeReporter
    options: RunOptions
    # What LoadImage means: the uploaded photo, RGB uint8 (H, W, 3). No path from a user reaches the filesystem.
    source_image: np.ndarray
    # Where the node's pictures of work in progress go; by default nowhere (nothing is made).
    previews: Previews = field(default_factory=Previews)
    # Where a colorize node's colour-query maps go; None (the terminal's `restore`): none are made.
    query_maps: QueryMapsSink | None = None
