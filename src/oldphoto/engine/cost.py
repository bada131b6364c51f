"""What a workflow will cost, worked out from the photo's header before anything is decoded or run.

`estimate(workflow, width, height, options)` walks the parsed workflow in the order it runs and gives, per node and
for the whole job: the pixels each node puts out, the worker process's peak resident memory while it runs, and its
seconds. `Budget.check` refuses a job over any of the caps with `OverBudget` (422 `over_budget`, the numbers in the
sentence and in the body). The web process runs both on every upload, after the header is read and before any
decode (`server/api.py`); the job never reaches a worker.

The coefficients are measurements of this project's nodes on a 2-core AMD EPYC (`benchmarks/cost_calibration.py`,
docs/jobs.md "What a job may cost"): each a cost per pixel, per tile pixel or per model input pixel, fitted so that
the estimate is at or above what was measured. They describe one job on that machine; a faster machine finishes
sooner, which only makes the seconds cap stricter than it needs to be.

Memory follows the runner (`engine/runner.py`): the decoded photo stays for the whole job, each node's output lives
until the last node that reads it has run, and models stay loaded once used (the worker's model cache). The worker's
own memory with torch, ONNX Runtime and ncnn imported (`BASE_BYTES`) is counted too: the caps are about the
machine, and a worker's resident memory is what the out-of-memory killer sees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldphoto.engine.context import RunOptions
from oldphoto.engine.graph import NodeSpec, Workflow
from oldphoto.errors import OldphotoError

MB = 1024 * 1024
MP = 1_000_000

# --- calibration (benchmarks/cost_calibration.py; the figures are in docs/jobs.md) -------------------------------

# A worker process at rest with torch, ONNX Runtime, OpenCV and ncnn imported: 714 MB measured.
BASE_BYTES = 720 * MB
# Every image between nodes is RGB uint8; a decoded photo may carry an alpha plane beside it.
RGB = 3
ALPHA = 1

# Decoding the upload in the worker (file bytes, Pillow's 4-byte pixels, the RGB array and an upright copy):
# 40 MB for 4 MP, 87 MB for 10 MP; 0.04-0.07 s per MP.
DECODE_BYTES_PER_PIXEL = 10
DECODE_S_PER_MP = 0.08
# Encoding the PNG result (a BGR copy, the encoder's buffer and the bytes): 22 MB for 4 MP, 53 MB for 10 MP; 0.12-0.23 s per MP.
ENCODE_BYTES_PER_PIXEL = 6
ENCODE_S_PER_MP = 0.25

# Denoise (OpenCV non-local means in bands): seconds per MP = a + b * search^2 * (1 + c * template). Measured on
# 0.49 MP: t3 s5 0.35, t7 s21 4.3, t21 s21 5.1, t7 s45 21.5, t21 s45 27.5 s per MP.
DENOISE_S_PER_MP = 0.1
DENOISE_S_PER_MP_PER_SEARCH2 = 0.0108
DENOISE_TEMPLATE_FACTOR = 0.021
# Working memory per pixel of a band (with its margins) besides the output: 15-27 MB for bands of 700 x 282-320.
DENOISE_BYTES_PER_BAND_PIXEL = 128
DENOISE_FIXED_BYTES = 8 * MB

# Sharpen (unsharp mask in float32 bands of 512 rows): 83-102 MB for 4 MP (67 B per band pixel: its float copies);
# 0.24 s per MP at radius 1.5, 0.67 at radius 20 (the Gaussian's kernel grows with the radius).
SHARPEN_BYTES_PER_BAND_PIXEL = 72
SHARPEN_S_PER_MP = 0.2
SHARPEN_S_PER_MP_PER_RADIUS = 0.025


@dataclass(frozen=True)
class UpscaleNet:
    """One Real-ESRGAN net's costs: ncnn's memory once loaded and per input pixel of a tile (with its margins), and
    seconds per MP of tile input and per tile."""

    fixed_bytes: int
    bytes_per_tile_pixel: int
    s_per_mp: float
    s_per_tile: float


# Measured (docs/jobs.md): animevideov3 (SRVGG, 64 channels; x2, x3, x4 share the body) 96 / 244 / 783 MB for tiles of
# 128 / 256 / 512 (160² / 288² / 544² with margins): 2.5 KB per tile pixel and 35 MB; issue 11's 4.0 GB at tile 1024
# is 3.0 KB per pixel. 8.7 s for one 544² tile, 15.2 s for four 288² ones, 31 s for sixteen 160² ones (load 4-6).
# x4plus (RRDB, 23 blocks): 875 / 1550 MB for tiles of 64 / 128 (96² / 160²): 41 KB per tile pixel and 500 MB of
# ncnn's transformed weights; 17-80 s. x4plus-anime (6 blocks): 1341 MB and 8.6 s at tile 128.
UPSCALE_NETS: dict[str, UpscaleNet] = {
    "realesr-animevideov3": UpscaleNet(40 * MB, 3_200, 25.0, 1.5),
    "realesrgan-x4plus-anime": UpscaleNet(310 * MB, 42_000, 330.0, 1.5),
    "realesrgan-x4plus": UpscaleNet(520 * MB, 42_000, 700.0, 1.5),
}
# A net of the operator's own (a .param/.bin pair under the models dir) is costed as the heaviest known one.
UNKNOWN_UPSCALE_NET = "realesrgan-x4plus"


@dataclass(frozen=True)
class ColorNet:
    """A DDColor encoder's costs: what stays loaded, what a pass at input S needs, and its seconds."""

    loaded_bytes: int  # spandrel, the network and one runtime engine (ONNX Runtime sessions)
    bytes_per_input_pixel: int  # the pass's activations, per pixel of the S x S model input
    s_per_input_mp: float  # inference seconds per MP of model input (S * S)
    load_s: float  # reading the checkpoint and loading the engine from the disk cache


# Measured (docs/jobs.md), a 1 MP photo, graphs on disk: tiny 927 / 1157 / 1481 MB above the worker at input
# 256 / 512 / 768 (850 MB and 1.0-1.2 KB per input pixel); large 2836 MB at 512 (2450 MB and 1.6 KB per pixel).
# Seconds from docs/benchmarks.md section 7 (a quiet machine: tiny 1.15 s, large 3.34 s of inference at 512), with
# half again as margin. The first use of a size also exports it (once per weights and size, so at most
# len(INPUT_SIZES) + 1 times per weights): not counted here, measured in docs/jobs.md.
COLOR_NETS: dict[str, ColorNet] = {
    "convnext-t": ColorNet(850 * MB, 1_250, 6.6, 3.0),
    "convnext-l": ColorNet(2_450 * MB, 1_600, 19.0, 8.0),
}
# Full-resolution steps of the pipeline: float32 RGB and L in preprocessing, ab and L in postprocessing, the output.
DDCOLOR_BYTES_PER_PIXEL = 19
DDCOLOR_S_PER_MP = 0.3
# A checkpoint given by path (the operator's) is read as large when its file is at least this big.
LARGE_CHECKPOINT_BYTES = 400 * MB


# --- results --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeCost:
    node: str
    type: str
    width: int  # of its output
    height: int
    memory: int  # bytes: the worker's resident memory at this node's peak
    seconds: float

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class JobCost:
    nodes: tuple[NodeCost, ...]
    width: int  # the result's
    height: int
    memory: int  # the peak over the job, decoding and encoding included
    seconds: float

    @property
    def result_pixels(self) -> int:
        return self.width * self.height

    def heaviest(self) -> NodeCost:
        return max(self.nodes, key=lambda n: n.memory)

    def slowest(self) -> NodeCost:
        return max(self.nodes, key=lambda n: n.seconds)


class OverBudget(OldphotoError):
    """A job whose estimate is over a cap: refused at admission, before any decode."""

    code = "over_budget"
    http_status = 422

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details
        self.extra = {"budget": details}


@dataclass(frozen=True)
class Budget:
    """Per-job caps (settings `OLDPHOTO_MAX_RESULT_PIXELS`, `OLDPHOTO_MAX_JOB_MEMORY_MB`, `OLDPHOTO_MAX_JOB_SECONDS`)."""

    max_result_pixels: int = 64_000_000
    max_memory_mb: int = 6144
    max_seconds: float = 300.0

    def check(self, cost: JobCost) -> None:
        """Raise `OverBudget` naming every cap the job is over, with the numbers."""
        reasons = []
        if cost.result_pixels > self.max_result_pixels:
            reasons.append(
                f"its result would be {cost.width}x{cost.height} ({_mp(cost.result_pixels)}), "
                f"over the limit of {_mp(self.max_result_pixels)}"
            )
        if cost.memory > self.max_memory_mb * MB:
            node = cost.heaviest()
            reasons.append(
                f"it would need about {cost.memory / MB:,.0f} MB of memory (at {node.type} node {node.node!r}), "
                f"over the limit of {self.max_memory_mb:,} MB"
            )
        if cost.seconds > self.max_seconds:
            node = cost.slowest()
            reasons.append(
                f"it would take about {cost.seconds:,.0f} s ({node.seconds:,.0f} s of it at {node.type} node {node.node!r}), "
                f"over the limit of {self.max_seconds:,.0f} s"
            )
        if reasons:
            raise OverBudget("This job is too big for this server: " + "; ".join(reasons) + ".", self.details(cost))

    def details(self, cost: JobCost) -> dict[str, Any]:
        """The numbers, as the error body's `budget` carries them."""
        return {
            "result_width": cost.width,
            "result_height": cost.height,
            "result_pixels": cost.result_pixels,
            "max_result_pixels": self.max_result_pixels,
            "memory_mb": round(cost.memory / MB),
            "max_memory_mb": self.max_memory_mb,
            "seconds": round(cost.seconds, 1),
            "max_seconds": self.max_seconds,
            "nodes": [
                {"node": n.node, "type": n.type, "width": n.width, "height": n.height, "memory_mb": round(n.memory / MB),
                 "seconds": round(n.seconds, 1)}
                for n in cost.nodes
            ],
        }


def _mp(pixels: int) -> str:
    return f"{pixels / MP:.1f} megapixels"


# --- the walk -------------------------------------------------------------------------------------------------


@dataclass
class _Walk:
    """What the worker holds while the job runs: loaded models by key (their bytes) and images by producing node."""

    options: RunOptions
    models: dict[str, int] = field(default_factory=dict)

    @property
    def models_bytes(self) -> int:
        return sum(self.models.values())


@dataclass(frozen=True)
class _Step:
    """One node's own cost: its output size, what it needs besides its inputs (its output included), its seconds."""

    width: int
    height: int
    working: int
    seconds: float


Estimator = Callable[[NodeSpec, int, int, _Walk], _Step]


def estimate(workflow: Workflow, width: int, height: int, options: RunOptions | None = None) -> JobCost:
    """The cost of running `workflow` on a `width` x `height` photo (the header's size) with these options."""
    from oldphoto.engine.nodes import NODE_TYPES

    options = options or RunOptions()
    walk = _Walk(options)
    source = width * height * (RGB + ALPHA)
    sizes: dict[str, tuple[int, int]] = {}
    held: dict[str, int] = {}  # node -> bytes of its output while some later node still reads it
    last_reader = _last_readers(workflow)
    nodes = []
    decode = BASE_BYTES + width * height * DECODE_BYTES_PER_PIXEL
    peak, seconds = decode, width * height / MP * DECODE_S_PER_MP
    for node_id in workflow.order:
        spec = workflow.nodes[node_id]
        inputs = [sizes[link.source] for link in spec.inputs.values()]
        in_w, in_h = max(inputs, key=lambda s: s[0] * s[1]) if inputs else (width, height)
        estimator = ESTIMATORS.get(spec.type, _passthrough)
        NODE_TYPES[spec.type].options_from(spec)  # parsed already; cheap, and keeps the estimators' options valid
        step = estimator(spec, in_w, in_h, walk)
        memory = BASE_BYTES + walk.models_bytes + source + sum(held.values()) + step.working
        nodes.append(NodeCost(node_id, spec.type, step.width, step.height, memory, step.seconds))
        peak, seconds = max(peak, memory), seconds + step.seconds
        sizes[node_id] = (step.width, step.height)
        if spec.type != "LoadImage":  # LoadImage's output is the source photo, counted once above
            held[node_id] = step.width * step.height * RGB
        for source_id in {link.source for link in spec.inputs.values()}:
            if last_reader.get(source_id) == node_id:
                held.pop(source_id, None)
    out_w, out_h = sizes[workflow.output_node.id]
    encode = BASE_BYTES + walk.models_bytes + source + out_w * out_h * (RGB + ENCODE_BYTES_PER_PIXEL)
    peak = max(peak, encode)
    seconds += out_w * out_h / MP * ENCODE_S_PER_MP
    return JobCost(tuple(nodes), out_w, out_h, peak, seconds)


def check(workflow: Workflow, width: int, height: int, options: RunOptions, budget: Budget) -> JobCost:
    """Refuse a job over `budget` (`OverBudget`) and return its cost. The size is the header's, stored before any
    EXIF rotation: the photo is judged both ways up (bands run along rows, so the two can differ a little)."""
    cost = estimate(workflow, width, height, options)
    budget.check(cost)
    if width != height:
        budget.check(estimate(workflow, height, width, options))
    return cost


def _last_readers(workflow: Workflow) -> dict[str, str]:
    """For each node, the last node (in run order) that reads one of its outputs."""
    last: dict[str, str] = {}
    for node_id in workflow.order:
        for link in workflow.nodes[node_id].inputs.values():
            last[link.source] = node_id
    return last


# --- per node type --------------------------------------------------------------------------------------------


def _passthrough(spec: NodeSpec, width: int, height: int, walk: _Walk) -> _Step:
    """LoadImage, SaveImage: hand the image on, no work of their own."""
    return _Step(width, height, 0, 0.0)


def _denoise(spec: NodeSpec, width: int, height: int, walk: _Walk) -> _Step:
    from oldphoto.engine.nodes.denoise import BAND_ROWS, Denoise, DenoiseOptions

    opts = Denoise.options_from(spec)
    assert isinstance(opts, DenoiseOptions)
    pixels = width * height
    if opts.strength == 0:
        return _Step(width, height, 0, 0.0)
    margin = opts.search_window // 2 + opts.template_window // 2
    band = width * min(height, BAND_ROWS + 2 * margin)
    working = pixels * RGB + band * DENOISE_BYTES_PER_BAND_PIXEL + DENOISE_FIXED_BYTES
    per_mp = DENOISE_S_PER_MP + DENOISE_S_PER_MP_PER_SEARCH2 * opts.search_window**2 * (1 + DENOISE_TEMPLATE_FACTOR * opts.template_window)
    return _Step(width, height, working, pixels / MP * per_mp)


def _sharpen(spec: NodeSpec, width: int, height: int, walk: _Walk) -> _Step:
    from oldphoto.engine.nodes.sharpen import BAND_ROWS, Sharpen, SharpenOptions

    opts = Sharpen.options_from(spec)
    assert isinstance(opts, SharpenOptions)
    pixels = width * height
    margin = math.ceil(4 * opts.radius) + 1
    band = width * min(height, BAND_ROWS + 2 * margin)
    working = pixels * RGB + band * SHARPEN_BYTES_PER_BAND_PIXEL
    return _Step(width, height, working, pixels / MP * (SHARPEN_S_PER_MP + SHARPEN_S_PER_MP_PER_RADIUS * opts.radius))


def _upscale(spec: NodeSpec, width: int, height: int, walk: _Walk) -> _Step:
    from oldphoto.engine.nodes.upscale import Upscale, UpscaleOptions

    opts = Upscale.options_from(spec)
    assert isinstance(opts, UpscaleOptions)
    return upscale_step(opts.model, opts.tile, width, height, walk)


def upscale_step(model: str, tile: int, width: int, height: int, walk: _Walk) -> _Step:
    from oldphoto.models.realesrgan import TILE_MARGIN, resolve_name

    files = resolve_name(model, models_dir=walk.options.models_dir)  # checked by the node already: known here
    net = UPSCALE_NETS[_net_family(files.name) or UNKNOWN_UPSCALE_NET]
    scale, margin = files.scale, TILE_MARGIN
    walk.models[f"upscale:{files.name}"] = net.fixed_bytes
    largest = (min(tile, height) + 2 * margin) * (min(tile, width) + 2 * margin)
    out_w, out_h = width * scale, height * scale
    padded = (width + 2 * margin) * (height + 2 * margin) * RGB
    # ncnn's activations for the largest tile, its float output and the piece copied out, the padded input, the output.
    working = largest * net.bytes_per_tile_pixel + largest * scale * scale * RGB * 4 * 2 + padded + out_w * out_h * RGB
    tiles = math.ceil(width / tile) * math.ceil(height / tile)
    seconds = tile_pixels(width, height, tile, margin) / MP * net.s_per_mp + tiles * net.s_per_tile
    return _Step(out_w, out_h, working, seconds)


def tile_pixels(width: int, height: int, tile: int, margin: int) -> int:
    """Input pixels the net sees over all tiles (`realesrgan.tile_boxes`' cut, each tile with its margins), counted
    by rows and columns: a 40 MP photo at tile 32 has 40,000 tiles."""
    rows, cols = math.ceil(height / tile), math.ceil(width / tile)
    heights = [tile] * (rows - 1) + [height - (rows - 1) * tile]
    widths = [tile] * (cols - 1) + [width - (cols - 1) * tile]
    return sum(h + 2 * margin for h in heights) * sum(w + 2 * margin for w in widths)


def _net_family(name: str) -> str | None:
    """The bundled net a name belongs to (`realesr-animevideov3-x2` -> `realesr-animevideov3`), or None."""
    for family in sorted(UPSCALE_NETS, key=len, reverse=True):
        if name == family or name.startswith(family + "-"):
            return family
    return None


def _ddcolor(spec: NodeSpec, width: int, height: int, walk: _Walk) -> _Step:
    from oldphoto.engine.nodes.colorize import DDColorNode, DDColorOptions

    opts = DDColorNode.options_from(spec)
    assert isinstance(opts, DDColorOptions)
    run = walk.options
    size = opts.input_size or run.input_size
    model = opts.model or run.model
    net = COLOR_NETS[_encoder(model, run.models_dir)]
    walk.models[f"ddcolor:{model}"] = net.loaded_bytes
    pixels = width * height
    working = pixels * DDCOLOR_BYTES_PER_PIXEL + size * size * net.bytes_per_input_pixel
    seconds = net.load_s + size * size / MP * net.s_per_input_mp + pixels / MP * DDCOLOR_S_PER_MP
    step = _Step(width, height, working, seconds)
    if not opts.upscale:
        return step
    # The optional upscale runs after the colour, on its output, while the colour's arrays are gone.
    up = upscale_step(opts.upscale_model, 256, width, height, walk)
    return _Step(up.width, up.height, max(step.working, up.working + pixels * RGB), step.seconds + up.seconds)


def _encoder(model: str, models_dir: Path) -> str:
    """`convnext-t` or `convnext-l`: a known name says; a path (the operator's) is judged by its file's size."""
    from oldphoto.models.registry import DDCOLOR_MODELS, HF_WEIGHT_FILES

    known = DDCOLOR_MODELS.get(model)
    if known is not None:
        return known.encoder
    path = Path(model).expanduser()
    try:
        # The loader's choice of file in a folder (models/ddcolor/loader.py), without importing torch here.
        weights = path
        if path.is_dir():
            weights = next((path / name for name in (*HF_WEIGHT_FILES, "pytorch_model.pt") if (path / name).is_file()), path)
        size = weights.stat().st_size
    except OSError:
        return "convnext-l"  # not readable from here: the heavier
    return "convnext-l" if size >= LARGE_CHECKPOINT_BYTES else "convnext-t"


def _pause(spec: NodeSpec, width: int, height: int, walk: _Walk) -> _Step:
    """The test node `Pause` (OLDPHOTO_TEST_NODES=1) takes the seconds it is given."""
    return _Step(width, height, 0, float(spec.params.get("seconds", spec.widgets[0] if spec.widgets else 1.0)))


ESTIMATORS: dict[str, Estimator] = {
    "LoadImage": _passthrough,
    "SaveImage": _passthrough,
    "Denoise": _denoise,
    "Sharpen": _sharpen,
    "Upscale": _upscale,
    "DDColor": _ddcolor,
    "Pause": _pause,
    "Crash": _passthrough,
}
