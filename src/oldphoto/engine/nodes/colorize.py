from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from oldphoto.engine.context import NodeContext
from oldphoto.engine.nodes.base import Node


class DDColorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The seed's widgets_values: Real-ESRGAN model for an optional upscale, model input size, upscale on/off.
    upscale_model: str = Field("realesr-animevideov3", max_length=64)
    input_size: int | None = Field(None, ge=64, le=2048)
    upscale: bool = False
    model: str | None = Field(None, max_length=64)
    ab_upsample: Literal["nearest", "bilinear"] | None = None


class DDColorNode(Node):
    type_name = "DDColor"
    source = "colorize"
    weight = 10.0
    Options = DDColorOptions
    widget_fields = ("upscale_model", "input_size", "upscale")

    def run(self, ctx: NodeContext, **inputs: Any) -> tuple[Any, ...]:
        raise NotImplementedError("being written")
