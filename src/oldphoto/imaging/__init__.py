"""Imaging: decoding untrusted uploads within limits, and encoding results.

sniff_format(head) -> "jpeg" | "png" | "webp" | "tiff" | "bmp" | "gif"   (else UnsupportedFormat)
probe(data) -> ImageInfo(format, width, height)                          (header only, no pixels, within budgets)
decode_image(data, max_pixels=...) / decode_file(path, max_pixels=...) -> DecodedImage
encode_png(rgb, alpha=None) -> bytes;  save_png(path, rgb, alpha=None)   (atomic)

Decoding and encoding (numpy, Pillow, OpenCV) are imported on first use of their names: the web process only
probes headers and writes files, and loads none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from oldphoto.imaging.probe import HeaderEndsEarly, ImageInfo, check_declared, check_pixels, probe
from oldphoto.imaging.sniff import SNIFF_BYTES, SUPPORTED, sniff_format

if TYPE_CHECKING:
    from oldphoto.imaging.decode import MAX_JPEG_SCANS, DecodedImage, decode_file, decode_image, read_file
    from oldphoto.imaging.encode import encode_png, fit_alpha, save_png, write_atomic

# Names from the modules that need numpy, Pillow or OpenCV, each with the module it comes from.
_LAZY = {
    **dict.fromkeys(("MAX_JPEG_SCANS", "DecodedImage", "decode_file", "decode_image", "read_file"), "decode"),
    **dict.fromkeys(("encode_png", "fit_alpha", "save_png", "write_atomic"), "encode"),
}


def __getattr__(name: str) -> Any:
    """`from oldphoto.imaging import decode_file` and the like: the module is imported now (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "MAX_JPEG_SCANS",
    "SNIFF_BYTES",
    "SUPPORTED",
    "DecodedImage",
    "HeaderEndsEarly",
    "ImageInfo",
    "check_declared",
    "check_pixels",
    "decode_file",
    "decode_image",
    "encode_png",
    "fit_alpha",
    "probe",
    "read_file",
    "save_png",
    "sniff_format",
    "write_atomic",
]
