"""Workflows the tests share."""

from __future__ import annotations

# The seed's own example (SPEC "Workflows"), exactly as the original design gives it: it must run as it stands.
SEED_EXAMPLE = {
    "nodes": [
        {"id": "load_image", "type": "LoadImage", "widgets_values": ["input_image.png"]},
        {
            "id": "ddcolor_node",
            "type": "DDColor",
            "inputs": {"image": "load_image.image"},
            "widgets_values": ["realesr-animevideov3", 512, False],
        },
        {"id": "save_output", "type": "SaveImage", "inputs": {"images": "ddcolor_node.output"}},
    ],
    "links": [[1, "load_image", 0, "ddcolor_node", 0], [2, "ddcolor_node", 0, "save_output", 0]],
}
