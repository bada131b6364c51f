"""The registry of node types: adding a step is one module here and one line below.

The web process imports every node, to validate and cost the workflows of uploads. So a node module imports numpy,
OpenCV and the model runtimes inside the methods that run it (in worker processes), never at its top: the web
process loads none of them (tests/server/test_imports.py).
"""

from __future__ import annotations

from oldphoto.engine.nodes.base import Node
from oldphoto.engine.nodes.colorize import DDColorNode
from oldphoto.engine.nodes.denoise import Denoise
from oldphoto.engine.nodes.io import LoadImage, SaveImage
from oldphoto.engine.nodes.sharpen import Sharpen
from oldphoto.engine.nodes.testing import TEST_NODES
from oldphoto.engine.nodes.upscale import Upscale

_NODES: tuple[type[Node], ...] = (LoadImage, DDColorNode, Denoise, Upscale, Sharpen, SaveImage, *TEST_NODES)
NODE_TYPES: dict[str, type[Node]] = {node.type_name: node for node in _NODES}

__all__ = ["NODE_TYPES", "Node"]
