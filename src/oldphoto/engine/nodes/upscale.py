from __future__ import annotations

from typing import TYPE_CHECKING, cast

from pydantic import BaseModel, ConfigDict, Field

from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec
from oldphoto.engine.nodes.base import Node
from oldphoto.engine.previews import Canvas
from oldphoto.errors import InvalidWorkflow, ModelMissing
from oldphoto.models.realesrgan import TileCallback, Upscaler, is_loaded, load_upscaler, resolve_name, tile_boxes

if TYPE_CHECKING:
    import numpy as np


class UpscaleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A bundled net, an alias, or the stem of a user's `.param`/`.bin` pair; never a path.
    model: str = Field("realesr-animevideov3-x2", max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    # Input pixels per tile side: progress and cancel come once per tile; 256 is near the fastest on a CPU.
    tile: int = Field(256, ge=32, le=1024)


class Upscale(Node):
    """Real-ESRGAN super-resolution (ncnn on the CPU), tile by tile. The only step that changes the size."""

    type_name = "Upscale"
    source = "upscale"
    weight = 6.0
    Options = UpscaleOptions
    widget_fields = ("model", "tile")
    options: UpscaleOptions

    @classmethod
    def check_spec(cls, spec: NodeSpec, options: RunOptions) -> None:
        """Refuse an unknown model before anything runs: a directory listing, no loading."""
        own = cast(UpscaleOptions, cls.options_from(spec))
        try:
            resolve_name(own.model, models_dir=options.models_dir)
        except ModelMissing as exc:
            raise InvalidWorkflow(exc.message, node=spec.id) from None

    def run(self, ctx: NodeContext, *, image: np.ndarray) -> tuple[np.ndarray]:
        import numpy as np  # in a worker only (engine/nodes/__init__.py)

        report = ctx.report
        report.stage("preprocess")
        rgb = np.ascontiguousarray(image)  # OpenCV refuses some strided views (a flip or crop from an earlier step)
        upscaler = self._load(ctx)
        report.stage("inference")
        tile = self.options.tile
        out = np.empty((rgb.shape[0] * upscaler.scale, rgb.shape[1] * upscaler.scale, 3), np.uint8)
        out = upscaler.upscale(rgb, tile=tile, on_tile=_tile_reporter(ctx, rgb, tile, out), out=out)
        report.stage("postprocess", "upscale.postprocess", width=out.shape[1], height=out.shape[0])
        return (out,)

    def _load(self, ctx: NodeContext) -> Upscaler:
        model, models_dir, threads = self.options.model, ctx.options.models_dir, ctx.options.threads
        name = resolve_name(model, models_dir=models_dir).name
        # Asked before loading, so the sentence people read says what is about to happen.
        cached = is_loaded(model, models_dir=models_dir, threads=threads)
        ctx.report.stage("load_model", "upscale.load_model.memory" if cached else "upscale.load_model", model=name)
        return load_upscaler(model, models_dir=models_dir, threads=threads)[0]


def _tile_reporter(ctx: NodeContext, rgb: np.ndarray, tile: int, out: np.ndarray) -> TileCallback:
    """Each tile's progress and, where previews are wanted, the picture filling in tile by tile over the input."""
    report, previews = ctx.report, ctx.previews
    canvas = Canvas(rgb, out.shape[0], out.shape[1]) if previews.wanted else None
    boxes = tile_boxes(rgb.shape[0], rgb.shape[1], tile)
    s = out.shape[0] // rgb.shape[0]

    def on_tile(index: int, total: int) -> None:
        report.count(index, total, "tile", "upscale.tile", index=index, total=total)
        if canvas is not None:
            top, left, bottom, right = boxes[index - 1]
            canvas.paste(top * s, left * s, out[top * s : bottom * s, left * s : right * s])
            previews.offer(report, canvas.picture)
        # Checked again after speaking, so a cancel that arrives with this tile's event stops before the next.
        report.cancel.check()

    return on_tile
