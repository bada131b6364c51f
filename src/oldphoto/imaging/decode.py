"""Decoding untrusted uploads: sniff, read the header, refuse bombs, then decode once inside a guard.

Order matters. The format is decided from the bytes; the declared size is read by our own header readers and
checked against the limit before any decoder allocates a pixel; only then does Pillow see the data, restricted
to the one plugin the magic number named (so a crafted file can never be routed to an unexpected decoder).
Every failure leaves as one of the project's errors: a hostile file must not be able to choose the exception.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from oldphoto.errors import BadInput, InvalidImage, OldphotoError, OutOfMemory, TooLarge, TooManyPixels
from oldphoto.imaging.modes import to_rgb_alpha
from oldphoto.imaging.orient import read_orientation, upright
from oldphoto.imaging.probe import ImageInfo, check_declared, check_pixels, probe

# Our format names -> the single Pillow plugin allowed to read each.
_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP", "gif": "GIF"}

# A progressive JPEG is decoded once per scan over the whole image, so thousands of tiny scans turn a small
# file into minutes of CPU. Real encoders write about ten; libjpeg-turbo's advice for untrusted input is a cap.
MAX_JPEG_SCANS = 256


# eq=False: equality and hashing by identity, since comparing arrays field by field has no single truth value.
@dataclass(frozen=True, slots=True, eq=False)
class DecodedImage:
    """An upload's pixels, upright: `rgb` (H, W, 3) uint8 and `alpha` (H, W) uint8 or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    width: int
    height: int
    # The decoder's mode before conversion (e.g. "L", "I;16", "CMYK"): tells a colorizer the source was grey.
    source_mode: str = "RGB"


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode an untrusted upload; raises UnsupportedFormat, TooManyPixels, InvalidImage or OutOfMemory."""
    if max_pixels <= 0:
        raise ValueError("max_pixels must be positive")
    info = probe(data)
    check_declared(info, max_pixels)
    if info.format == "jpeg":
        _check_jpeg_scans(data)
    with _decoder_guard(info):
        return _decode(data, info, max_pixels)


def decode_file(path: str | os.PathLike[str], *, max_pixels: int, max_bytes: int | None = None) -> DecodedImage:
    """Decode an image file with the same checks; `max_bytes` (TooLarge) bounds what is read into memory."""
    return decode_image(read_file(path, max_bytes=max_bytes), max_pixels=max_pixels)


def _check_jpeg_scans(data: bytes) -> None:
    # Start-of-scan markers cannot occur inside entropy-coded data (0xFF is stuffed there), so counting them
    # bounds the number of scans without parsing the whole file.
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise InvalidImage(
            f"This JPEG file is split into {scans} scans; at most {MAX_JPEG_SCANS} are accepted, "
            "as real photos use about ten."
        )


def _decode(data: bytes, info: ImageInfo, max_pixels: int) -> DecodedImage:
    with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[info.format]]) as im:
        # Pillow's own view of the size can differ from the header (a GIF frame larger than its screen).
        check_pixels(im.width, im.height, max_pixels)
        im.load()
        # Read after load: Pillow turns TIFFs upright itself while loading and then drops their tag.
        orientation = read_orientation(im)
        source_mode = im.mode
        rgb, alpha = to_rgb_alpha(im)
    # The Pillow copy is closed above, before orientation makes its own copy of the arrays.
    rgb = upright(rgb, orientation)
    alpha = None if alpha is None else upright(alpha, orientation)
    height, width = rgb.shape[:2]
    return DecodedImage(rgb, alpha, info.format, width, height, source_mode)


@contextmanager
def _decoder_guard(info: ImageInfo) -> Iterator[None]:
    # This switch is process-wide and any imported library may have turned it on; with it on, Pillow pads a
    # truncated upload with grey and calls it a success. Uploads must be whole.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    except OldphotoError:
        raise
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"This {info.format.upper()} image declares too many pixels to decode safely.") from exc
    except MemoryError as exc:
        raise OutOfMemory("The server ran out of memory while decoding this image; try a smaller one.") from exc
    except Exception as exc:  # decoders raise a zoo of types on hostile input; all mean "damaged"
        raise InvalidImage(
            f"This {info.format.upper()} file is damaged or incomplete, so it cannot be decoded."
        ) from exc


def read_file(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, refusing devices and pipes (which never end) and files over max_bytes."""
    name = Path(path).name
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer before we could even look at it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            status = os.fstat(fh.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise BadInput(f"{name} is not a regular file.")
            if max_bytes is not None and status.st_size > max_bytes:
                raise _too_large(name, max_bytes)
            # Read one byte past the limit: the file may have grown since fstat.
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except OSError as exc:
        raise BadInput(f"Cannot read {name}: {exc.strerror or exc}.") from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise _too_large(name, max_bytes)
    return data


def _too_large(name: str, max_bytes: int) -> TooLarge:
    return TooLarge(f"{name} is larger than the {max_bytes / 2**20:.1f} MB we accept.")
