"""Reading an image's declared size from its header bytes, without a decoder and without allocating pixels.

This runs before any decoder sees the upload so that a decompression bomb (a tiny file declaring billions of
pixels) is refused on arithmetic alone. The readers are deliberately small and strict: anything they cannot read
is an InvalidImage, since the real decoder would only fail later and at greater cost.

They also hold each header to a budget of segments, chunks, blocks and bytes. Pillow parses the parts of a file
before its pixel data in Python, a step per segment or per stray byte, so a file of millions of empty segments
costs it seconds and hundreds of MB while every size limit holds. The same walk here costs a few microseconds
per step and stops at the budget, and it is cheap enough to run in the web process (on the file's first bytes).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from oldphoto.errors import InvalidImage, TooManyPixels
from oldphoto.imaging.sniff import sniff_format


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image's format and its size as stored (before any EXIF rotation, which keeps the pixel count).

    `tile` is a tiled TIFF's (width, height) of one tile: libtiff allocates a whole tile before decoding it,
    and a tile may legally be far larger than the image, so it is a second size to hold to the limit.
    """

    format: str
    width: int
    height: int
    tile: tuple[int, int] | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height


class HeaderEndsEarly(InvalidImage):
    """The bytes ran out before the header said what it must. On a whole file that is damage; on the first bytes
    of a longer file it only means that the rest must be read."""


def probe(data: bytes) -> ImageInfo:
    """Sniff the format and read the declared width and height from the header; no pixel is decoded.

    Over a header budget (segments, chunks, blocks, stray bytes: the constants below) it is an InvalidImage.
    """
    fmt = sniff_format(data)
    try:
        width, height, tile = _READERS[fmt](data)
    except (struct.error, IndexError) as exc:
        raise HeaderEndsEarly(_damaged(fmt, "its header ends early").message) from exc
    except OverflowError as exc:  # a 64-bit BigTIFF offset beyond anything addressable
        raise _damaged(fmt, "its header points outside the file") from exc
    for w, h in [(width, height)] + ([tile] if tile is not None else []):
        if w <= 0 or h <= 0:
            raise _damaged(fmt, f"its header declares a {w}x{h} picture")
    return ImageInfo(fmt, width, height, tile)


def check_declared(info: ImageInfo, max_pixels: int) -> None:
    """TooManyPixels when the header's size, or a tiled TIFF's tile, is over the limit: arithmetic only."""
    check_pixels(info.width, info.height, max_pixels)
    if info.tile is not None:
        _check_tile(*info.tile, max_pixels)


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """TooManyPixels when width x height is over the limit."""
    if width * height > max_pixels:
        raise TooManyPixels(
            f"This image is {width}x{height} pixels ({_megapixels(width * height)}); "
            f"the most we accept is {_megapixels(max_pixels)}."
        )


def _check_tile(width: int, height: int, max_pixels: int) -> None:
    # libtiff allocates one whole tile up front, and a tile may be declared far larger than its image.
    if width * height > max_pixels:
        raise TooManyPixels(
            f"This TIFF file is cut into tiles of {width}x{height} pixels ({_megapixels(width * height)}); "
            f"the most we accept is {_megapixels(max_pixels)}."
        )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


# What each header reader returns: width, height, and a TIFF's tile size (None elsewhere).
_Size = tuple[int, int, "tuple[int, int] | None"]


def _damaged(fmt: str, why: str) -> InvalidImage:
    return InvalidImage(f"This {fmt.upper()} file is damaged or incomplete: {why}.")


def _over_budget(fmt: str, what: str, limit: int, usual: str) -> InvalidImage:
    return InvalidImage(f"This {fmt.upper()} file has more than {limit} {what}; {usual}.")


# Pillow reads every chunk up to the pixel data, and then each IDAT chunk, in Python: 12-byte empty chunks make
# two million steps of a 24 MB upload. Real files have a handful of chunks before IDAT, and IDATs of 8 KB or more.
MAX_PNG_CHUNKS = 1000  # before the first IDAT
MAX_PNG_IDAT_CHUNKS = 20_000  # 25 MB in IDATs of 1.3 KB on average


def _png_size(data: bytes) -> _Size:
    # The first chunk must be a 13-byte IHDR, right after the 8-byte signature.
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR" or length != 13:
        raise _damaged("png", "the first chunk is not its header (IHDR)")
    width, height = struct.unpack_from(">II", data, 16)
    if width > 2**31 - 1 or height > 2**31 - 1:
        raise _damaged("png", "its header declares an impossible size")
    _png_walk(data)
    return width, height, None


def _png_walk(data: bytes) -> None:
    """Count the chunks up to the end of the pixel data; where the bytes end first, judge what was seen."""
    pos, before, idats = 8, 0, 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            idats += 1
            if idats > MAX_PNG_IDAT_CHUNKS:
                raise InvalidImage(
                    f"This PNG file has its pixel data cut into more than {MAX_PNG_IDAT_CHUNKS} chunks; "
                    "real files use a few hundred at most."
                )
        elif idats:  # the pixel data is over: Pillow decodes the picture from here
            return
        else:
            before += 1
            if before > MAX_PNG_CHUNKS:
                raise _over_budget("png", "chunks before its picture", MAX_PNG_CHUNKS, "real files have a few")
        pos += 12 + length


# Start-of-frame markers: every SOFn except DHT (C4), JPG (C8) and DAC (CC), which share the range.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers that stand alone, without a length field.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


# Pillow walks from SOI to the first scan (SOS) in Python, a step per segment and a step per stray byte between
# segments, keeping every APPn segment in memory: 6,000,000 empty APP segments in 24 MB cost it 10 s and 880 MB.
# Real photos have a few dozen segments there (EXIF, an ICC profile in 64 KB pieces, XMP) and no stray bytes.
MAX_JPEG_SEGMENTS = 1000
MAX_JPEG_METADATA_BYTES = 16 * 2**20  # APPn and COM payloads: EXIF, ICC profiles, extended XMP (depth maps)
MAX_JPEG_STRAY_BYTES = 64 * 2**10  # junk and fill bytes between segments, which libjpeg tolerates
_JPEG_METADATA = frozenset({*range(0xE0, 0xF0), 0xFE})  # APP0-APP15, COM
_FILL = re.compile(rb"\xff+")


def _jpeg_size(data: bytes) -> _Size:
    """The frame header's size, after a walk over every segment up to the first scan, within the budgets.

    Where the bytes end after the frame header, the size stands and the decoder judges the rest.
    """
    size: _Size | None = None
    pos, segments, metadata, stray = 2, 0, 0, 0
    try:
        while True:
            # Like libjpeg, tolerate stray bytes between segments by looking for the next marker; a run of 0xFF is
            # one marker prefix and fill bytes. Both searches run in C, whatever their length.
            found = data.find(b"\xff", pos)
            if found < 0:
                raise IndexError("no marker")
            run = _FILL.match(data, found)
            assert run is not None  # data[found] is 0xFF
            stray += (found - pos) + (run.end() - found - 1)
            if stray > MAX_JPEG_STRAY_BYTES:
                raise _over_budget("jpeg", "stray bytes between its segments", MAX_JPEG_STRAY_BYTES, "real photos have none")
            pos = run.end()
            marker = data[pos]
            pos += 1
            if marker in _JPEG_STANDALONE:
                continue
            if marker in (0xD8, 0xD9, 0xDA):
                if marker == 0xDA and size is not None:
                    return size  # the first scan: what follows is libjpeg's, in C
                raise _damaged("jpeg", "the image data starts before its frame header")
            (length,) = struct.unpack_from(">H", data, pos)
            segments += 1
            if segments > MAX_JPEG_SEGMENTS:
                raise _over_budget("jpeg", "segments before its picture", MAX_JPEG_SEGMENTS, "real photos have a few dozen")
            if marker in _JPEG_SOF and size is None:
                height, width = struct.unpack_from(">HH", data, pos + 3)
                if height == 0:
                    # A height deferred to a DNL marker: legal in theory, unsupported by libjpeg in practice.
                    raise _damaged("jpeg", "its frame header leaves the height undefined")
                size = (width, height, None)
            elif marker in _JPEG_METADATA:
                metadata += length - 2
                if metadata > MAX_JPEG_METADATA_BYTES:
                    usual = "real photos have well under 1 MB"
                    raise _over_budget("jpeg", "bytes of metadata before its picture", MAX_JPEG_METADATA_BYTES, usual)
            if length < 2:
                raise _damaged("jpeg", "a segment has an impossible length")
            pos += length
    except (struct.error, IndexError):
        if size is None:
            raise
        return size


# Extension blocks before the first frame, and their data sub-blocks, are read one by one in Python (by Pillow
# and here). Real files have a few (loop count, frame timing, a comment, XMP).
MAX_GIF_BLOCKS = 65_536


def _gif_size(data: bytes) -> _Size:
    """The logical screen, grown to hold the first frame: Pillow enlarges its canvas the same way."""
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + _gif_colour_table_size(flags)
    blocks = 0
    while True:
        block = data[pos]
        if block == 0x21:  # extension: label, then data sub-blocks
            pos, blocks = _gif_skip_sub_blocks(data, pos + 2, blocks + 1)
        elif block == 0x2C:  # image descriptor of the first frame
            left, top, frame_w, frame_h = struct.unpack_from("<HHHH", data, pos + 1)
            return max(width, left + frame_w), max(height, top + frame_h), None
        else:
            raise _damaged("gif", "it holds no picture")


def _gif_colour_table_size(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _gif_skip_sub_blocks(data: bytes, pos: int, blocks: int) -> tuple[int, int]:
    """Past the sub-blocks at `pos`, counting each against the budget: where the next block starts, and the count."""
    while (size := data[pos]) != 0:
        pos += size + 1
        blocks += 1
        if blocks > MAX_GIF_BLOCKS:
            raise _over_budget("gif", "blocks before its first frame", MAX_GIF_BLOCKS, "real files have a few")
    return pos + 1, blocks


def _bmp_size(data: bytes) -> _Size:
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size == 12:  # OS/2 core header: unsigned 16-bit sizes
        return (*struct.unpack_from("<HH", data, 18), None)
    width, height = struct.unpack_from("<ii", data, 18)
    # A negative height means rows are stored top-down; the size is the same.
    return width, abs(height), None


_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 256, 257, 322, 323
_TIFF_SIZE_TAGS = frozenset({_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH})
# Field type -> struct code for the integer types a size may use (SHORT, LONG, LONG8).
_TIFF_INT_TYPES = {3: "H", 4: "I", 16: "Q"}
# Pillow reads every entry of a directory in Python; real pages have a few dozen tags.
MAX_TIFF_ENTRIES = 4096


def _tiff_size(data: bytes) -> _Size:
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack_from(order + "H", data, 2)
    if version == 43:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        (ifd,) = struct.unpack_from(order + "Q", data, 8)
        (count,) = struct.unpack_from(order + "Q", data, ifd)
        first, entry_size, value_at = ifd + 8, 20, 12
    else:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        first, entry_size, value_at = ifd + 2, 12, 8
    if count > MAX_TIFF_ENTRIES:
        raise _over_budget("tiff", "tags on its first page", MAX_TIFF_ENTRIES, "real files have a few dozen")
    # A hostile count may promise more entries than the file holds; read only those that exist.
    count = min(count, max(0, (len(data) - first) // entry_size))
    found: dict[int, int] = {}
    for index in range(count):
        entry = first + index * entry_size
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag in _TIFF_SIZE_TAGS and kind in _TIFF_INT_TYPES:
            (found[tag],) = struct.unpack_from(order + _TIFF_INT_TYPES[kind], data, entry + value_at)
    if _TIFF_WIDTH not in found or _TIFF_LENGTH not in found:
        raise _damaged("tiff", "its first page does not state its width and height")
    tiled = _TIFF_TILE_WIDTH in found or _TIFF_TILE_LENGTH in found
    # A tiled page lacking one tile dimension is broken; 0 makes probe() refuse it as such.
    tile = (found.get(_TIFF_TILE_WIDTH, 0), found.get(_TIFF_TILE_LENGTH, 0)) if tiled else None
    return found[_TIFF_WIDTH], found[_TIFF_LENGTH], tile


def _webp_size(data: bytes) -> _Size:
    kind = data[12:16]
    body = 20  # after the RIFF header (12 bytes) and the first chunk's header (8 bytes)
    if kind == b"VP8X":  # extended: 24-bit canvas size minus one
        if len(data) < body + 10:
            raise IndexError("short VP8X chunk")
        width = int.from_bytes(data[body + 4 : body + 7], "little") + 1
        height = int.from_bytes(data[body + 7 : body + 10], "little") + 1
        return width, height, None
    if kind == b"VP8L":  # lossless: signature byte, then 14-bit sizes minus one
        if data[body] != 0x2F:
            raise _damaged("webp", "its lossless header is broken")
        (bits,) = struct.unpack_from("<I", data, body + 1)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, None
    if kind == b"VP8 ":  # lossy: frame tag, start code, then 14-bit sizes (2 bits of scaling above)
        if data[body + 3 : body + 6] != b"\x9d\x01\x2a":
            raise _damaged("webp", "its lossy header is broken")
        width, height = struct.unpack_from("<HH", data, body + 6)
        return width & 0x3FFF, height & 0x3FFF, None
    raise _damaged("webp", "its first chunk is not a picture")


_READERS: dict[str, Callable[[bytes], _Size]] = {
    "png": _png_size,
    "jpeg": _jpeg_size,
    "gif": _gif_size,
    "bmp": _bmp_size,
    "tiff": _tiff_size,
    "webp": _webp_size,
}
