from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from oldphoto.engine.context import NodeContext
from oldphoto.engine.nodes.base import Node


class UpscaleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field("realesr-animevideov3-x2", max_length=64)
    tile: int = Field(256, ge=32, le=1024)


class Upscale(Node):
    type_name = "Upscale"
    source = "upscale"
    weight = 6.0
    Options = UpscaleOptions
    widget_fields = ("model", "tile")

    def run(self, ctx: NodeContext, **inputs: Any) -> tuple[Any, ...]:
        raise NotImplementedError("being written")
