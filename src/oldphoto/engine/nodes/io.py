"""LoadImage and SaveImage: the ends of every workflow. They do no work of their own, so they stay silent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from oldphoto.engine.context import NodeContext
from oldphoto.engine.nodes.base import Node

if TYPE_CHECKING:
    import numpy as np


class LoadImageOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Kept for the seed's form; it names the uploaded photo and never reaches the filesystem.
    image: str = Field("input_image.png", max_length=255)


class LoadImage(Node):
    type_name = "LoadImage"
    weight = 0.0
    input_names = ()
    output_names = ("image", "mask")
    Options = LoadImageOptions
    widget_fields = ("image",)

    def run(self, ctx: NodeContext, **inputs: Any) -> tuple[np.ndarray, None]:
        return ctx.source_image, None


class SaveImageOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename_prefix: str = Field("oldphoto", max_length=255)


class SaveImage(Node):
    type_name = "SaveImage"
    weight = 0.0
    input_names = ("images",)
    output_names = ("image",)
    Options = SaveImageOptions
    widget_fields = ("filename_prefix",)

    def run(self, ctx: NodeContext, *, images: np.ndarray) -> tuple[np.ndarray]:
        return (images,)
