"""The DDColor node: the authors' colorization, reported stage by stage and block by block, with an optional upscale.

Torch and the model code are imported when the node runs, not with this module: validating a workflow (the web
process does it for every upload) needs only the options.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec
from oldphoto.engine.nodes.base import Node
from oldphoto.engine.nodes.upscale import Upscale
from oldphoto.engine.reporter import NodeReporter
from oldphoto.errors import InvalidWorkflow
from oldphoto.models.registry import DDCOLOR_MODELS, INPUT_MULTIPLE, INPUT_SIZES

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np

    from oldphoto.imaging.querymaps import QueryMaps
    from oldphoto.models.ddcolor import Colorizer
    from oldphoto.models.ddcolor.lens import QueryResponses
    from oldphoto.models.ddcolor.pipeline import Prepared
    from oldphoto.models.ddcolor.progress import BlockCallback


class DDColorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The seed's widgets_values: Real-ESRGAN model for an optional upscale, model input size, upscale on/off.
    upscale_model: str = Field("realesr-animevideov3", max_length=64)
    input_size: int | None = Field(None, ge=64, le=2048)
    upscale: bool = False
    model: str | None = Field(None, max_length=64)
    ab_upsample: Literal["nearest", "bilinear"] | None = None

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, value: int | None) -> int | None:
        if value is not None and value % INPUT_MULTIPLE:
            raise ValueError(f"the model input size must be a multiple of {INPUT_MULTIPLE}, such as 512")
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        # A workflow comes from users: it may name a known model, never a file on the server (the operator's
        # OLDPHOTO_MODEL and the CLI's --model may give a path).
        if value is not None and value not in DDCOLOR_MODELS:
            raise ValueError(f"unknown model {value!r}; known models are {', '.join(DDCOLOR_MODELS)}")
        return value


class DDColorNode(Node):
    type_name = "DDColor"
    source = "colorize"
    weight = 10.0
    Options = DDColorOptions
    widget_fields = ("upscale_model", "input_size", "upscale")
    options: DDColorOptions

    @classmethod
    def check_spec(cls, spec: NodeSpec, options: RunOptions) -> None:
        own = cast(DDColorOptions, cls.options_from(spec))
        allowed = allowed_input_sizes(options)
        if own.input_size is not None and own.input_size not in allowed:
            # Each size is an export on disk and an engine in a worker's memory: a short list, not every multiple of 32.
            raise InvalidWorkflow(f"input_size must be one of {', '.join(map(str, allowed))}, not {own.input_size}", node=spec.id)
        if own.upscale:
            Upscale.check_spec(_upscale_spec(spec.id, own), options)

    @classmethod
    def warm(cls, options: RunOptions) -> bool:
        """The server's model, with its ONNX sessions building, when its graphs are on disk: a fresh worker's first
        job then finds them started or built (no PyTorch is imported; another runtime, or no graphs, waits for a job)."""
        from oldphoto.models.ddcolor import checkpoint_file, load_colorizer
        from oldphoto.models.ddcolor.onnx import graph_key, is_cached, onnxruntime_missing
        from oldphoto.models.runtimes import device_name
        from oldphoto.models.store import ModelStore

        try:
            if options.runtime not in ("auto", "onnx") or device_name(options.device) != "cpu" or onnxruntime_missing():
                return False
            models_dir = Path(options.models_dir)
            store = ModelStore(models_dir)
            path = store.cached_path(options.model) if options.model in DDCOLOR_MODELS else Path(options.model)
            if path is None or not is_cached(graph_key(checkpoint_file(path), options.input_size, models_dir)):
                return False
            cache_bytes = None if options.runtime_cache_mb is None else options.runtime_cache_mb * 1024 * 1024
            colorizer, _ = load_colorizer(path, "cpu", options.runtime, cache_dir=models_dir, cache_max_bytes=cache_bytes)
            colorizer.prepare(options.input_size)
        except Exception as exc:  # the first job will meet the same problem and report it properly
            log.info("no warm start for %s (%s)", options.model, exc)
            return False
        return True

    def cost(self) -> float:
        return self.weight + (self._upscaler().cost() if self.options.upscale else 0.0)

    def run(self, ctx: NodeContext, *, image: np.ndarray) -> tuple[np.ndarray]:
        colorize_report, upscale_report = self._reports(ctx.report)
        colored = self._colorize(ctx, colorize_report, image)
        if upscale_report is None:
            return (colored,)
        upscale_ctx = NodeContext(upscale_report, ctx.options, ctx.source_image, ctx.previews, ctx.query_maps)
        return (self._upscaler().run(upscale_ctx, image=colored)[0],)

    def _colorize(self, ctx: NodeContext, report: NodeReporter, image: np.ndarray) -> np.ndarray:
        from oldphoto.models.ddcolor import postprocess, preprocess

        opts, run = self.options, ctx.options
        report.stage("preprocess")
        input_size = opts.input_size or run.input_size
        prepared = preprocess(image, input_size)
        colorizer = self._load(report, opts.model or run.model, run)
        # The query lens only where its maps are wanted and someone takes them: otherwise nothing of it runs.
        lens = run.attention and ctx.query_maps is not None
        self._prepare_runtime(report, colorizer, input_size, lens)
        # The format the pass runs in, known once its engine is ready (a float16 probe on CUDA may refuse it).
        report.stage("inference", fields={"precision": colorizer.precision_used(input_size).event()})

        def on_block(index: int, total: int, name: str) -> None:
            report.count(index, total, "block", "inference.block", block=name, index=index, total=total)
            # Checked again after speaking, so a cancel that arrives with this block's event stops the pass here.
            report.cancel.check()

        ab, responses = self._infer(colorizer, run, prepared.batch(), on_block, report, lens)
        if responses is not None and ctx.query_maps is not None:
            ctx.query_maps(query_maps(responses, prepared.size))
        # As soon as the network ends: its colours, before the full-size postprocess.
        ctx.previews.offer(report, lambda: network_colours(prepared, ab, ctx.previews.max_side))
        report.stage("postprocess")
        return postprocess(prepared, ab, opts.ab_upsample or run.ab_upsample)

    @staticmethod
    def _infer(
        colorizer: Colorizer, run: RunOptions, tensor: Any, on_block: BlockCallback, report: NodeReporter, lens: bool
    ) -> tuple[Any, QueryResponses | None]:
        """One pass of its own, or a place in a pass shared with the colorize jobs running beside it; with `lens`, the
        query lens's responses beside ab (None where the runtime has none)."""
        if run.batch_max <= 1:
            if lens:
                return colorizer.infer_lens(tensor, on_block=on_block)
            return colorizer.infer(tensor, on_block=on_block), None
        from oldphoto.models.ddcolor import shared_batcher

        batcher = shared_batcher(colorizer, run.batch_max, run.batch_wait_ms / 1000)
        cancelled = lambda: report.cancel.cancelled  # noqa: E731
        if lens:
            return batcher.infer_lens(tensor, on_block=on_block, cancelled=cancelled)
        return batcher.infer(tensor, on_block=on_block, cancelled=cancelled), None

    def _load(self, report: NodeReporter, model: str, run: RunOptions) -> Colorizer:
        """The load_model stage: from memory, from the disk cache, or downloaded first (with its percentage)."""
        from oldphoto.models.ddcolor import is_loaded, load_colorizer
        from oldphoto.models.runtimes import device_name as resolve_device_name
        from oldphoto.models.store import ModelStore

        models_dir = Path(run.models_dir)
        device = resolve_device_name(run.device)
        store = ModelStore(models_dir)
        if model in DDCOLOR_MODELS and store.cached_path(model) is None:
            report.stage("load_model", "load_model.download", model=model, percent=0)

            def on_bytes(done: int, total: float | None) -> None:
                fraction = done / total if total else 0.0
                report.step(fraction, "load_model.download", model=model, percent=int(fraction * 100))

            path = store.pull(model, progress=on_bytes)
        else:
            path = store.resolve(model)
            report.stage("load_model", "load_model.memory" if is_loaded(path, device) else None)
        cache_bytes = run.runtime_cache_mb * 1024 * 1024
        colorizer, _ = load_colorizer(path, device, run.runtime, cache_dir=models_dir, cache_max_bytes=cache_bytes, precision=run.precision)
        return colorizer

    @staticmethod
    def _prepare_runtime(report: NodeReporter, colorizer: Colorizer, input_size: int, lens: bool) -> None:
        """Still the load_model stage: the runtime for this input size (the first time, an export that is cached),
        and the query lens when wanted (on ONNX the first time: its small graph exported beside the segments)."""
        if not colorizer.needs_export(input_size):
            colorizer.prepare(input_size, lens=lens)  # from the disk cache or memory: a second or two at most
            return
        report.step(0.0, "load_model.prepare", percent=0)

        def on_progress(fraction: float, _what: str) -> None:
            report.step(fraction, "load_model.prepare", percent=int(fraction * 100))

        colorizer.prepare(input_size, on_progress, lens=lens)

    def _reports(self, report: NodeReporter) -> tuple[NodeReporter, NodeReporter | None]:
        """The node's share of the job split between colorizing and the optional upscale, by their weights."""
        if not self.options.upscale:
            return report, None
        split = report.lo + (report.hi - report.lo) * self.weight / self.cost()
        colorize = NodeReporter(report.run, report.node_id, self.source, report.lo, split)
        upscale = NodeReporter(report.run, report.node_id, Upscale.source, split, report.hi)
        return colorize, upscale

    def _upscaler(self) -> Node:
        return Upscale.build(_upscale_spec(self.spec.id, self.options))


def network_colours(prepared: Prepared, ab: Any, max_side: int) -> np.ndarray:
    """The picture the network made: its ab at model resolution on the photo's lightness, both shrunk to at most
    `max_side` (the photo's shape, not the network's square)."""
    import cv2
    import numpy as np

    from oldphoto.imaging.preview import fitted_size

    height, width = fitted_size(*prepared.size, max_side)
    lightness = cv2.resize(np.ascontiguousarray(prepared.l_full), (width, height), interpolation=cv2.INTER_AREA)
    colours = np.ascontiguousarray(np.asarray(ab, dtype=np.float32)[0].transpose(1, 2, 0))
    colours = cv2.resize(colours, (width, height), interpolation=cv2.INTER_AREA)
    lab = np.concatenate((lightness.reshape(height, width, 1), colours), axis=-1)
    # OpenCV clips float Lab->RGB to 0..1, so the cast never wraps.
    return (cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0).round().astype(np.uint8)


def query_maps(responses: QueryResponses, photo: tuple[int, int]) -> QueryMaps:
    """The colour-query maps of a pass of one image, drawn in the photo's shape (height, width)
    (models/ddcolor/lens.py, imaging/querymaps.py)."""
    from oldphoto.imaging.querymaps import draw
    from oldphoto.models.ddcolor.lens import read

    return draw(read(responses), responses.sub_pixel, photo)


def allowed_input_sizes(options: RunOptions) -> list[int]:
    """The model input sizes a workflow may choose: the short list, and the size this server runs by default."""
    return sorted({*INPUT_SIZES, options.input_size})


def _upscale_spec(node_id: str, options: DDColorOptions) -> NodeSpec:
    return NodeSpec(node_id, Upscale.type_name, params={"model": options.upscale_model})
