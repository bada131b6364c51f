"""Imaging: decoding untrusted uploads within limits, and encoding results.

sniff_format(head) -> "jpeg" | "png" | "webp" | "tiff" | "bmp" | "gif"   (else UnsupportedFormat)
probe(data) -> ImageInfo(format, width, height)                          (header only, no pixels, within budgets)
decode_image(data, max_pixels=...) / decode_file(path, max_pixels=...) -> DecodedImage
encode_png(rgb, alpha=None) -> bytes;  save_png(path, rgb, alpha=None)   (atomic)
"""

from oldphoto.imaging.decode import (
    MAX_JPEG_SCANS,
    DecodedImage,
    check_declared,
    check_pixels,
    decode_file,
    decode_image,
    read_file,
)
from oldphoto.imaging.encode import encode_png, fit_alpha, save_png, write_atomic
from oldphoto.imaging.probe import HeaderEndsEarly, ImageInfo, probe
from oldphoto.imaging.sniff import SNIFF_BYTES, SUPPORTED, sniff_format

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
