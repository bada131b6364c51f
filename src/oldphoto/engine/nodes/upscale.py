from __future__ import annotations

from typing import TYPE_CHECKING, cast

from pydantic import BaseModel, ConfigDict, Field

from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec
from oldphoto.engine.nodes.base import Node
from oldphoto.engine.reporter import NodeReporter
from oldphoto.errors import InvalidWorkflow, ModelMissing
from oldphoto.models.realesrgan import TileCallback, Upscaler, is_loaded, load_upscaler, resolve_name

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
        out = upscaler.upscale(rgb, tile=self.options.tile, on_tile=_tile_reporter(report))
        report.stage("postprocess", "upscale.postprocess", width=out.shape[1], height=out.shape[0])
        return (out,)

    def _load(self, ctx: NodeContext) -> Upscaler:
        model, models_dir, threads = self.options.model, ctx.options.models_dir, ctx.options.threads
        name = resolve_name(model, models_dir=models_dir).name
        # Asked before loading, so the sentence people read says what is about to happen.
        cached = is_loaded(model, models_dir=models_dir, threads=threads)
        ctx.report.stage("load_model", "upscale.load_model.memory" if cached else "upscale.load_model", model=name)
        return load_upscaler(model, models_dir=models_dir, threads=threads)[0]


def _tile_reporter(report: NodeReporter) -> TileCallback:
    def on_tile(index: int, total: int) -> None:
        report.step(index / total, "upscale.tile", index=index, total=total)
        # Checked again after speaking, so a cancel that arrives with this tile's event stops before the next.
        report.cancel.check()

    return on_tile
