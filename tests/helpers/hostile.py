"""An adversarial corpus of uploads, built in code at test time (no binary files in the repository).

`hostile_corpus()` returns `Case`s: decompression bombs in every accepted format, truncated and corrupt files,
things that are not images at all, polyglots, misleading names and content types, and the awkward but valid
images a photo service must get right (every EXIF orientation, CMYK, 16-bit, palettes with transparency...).
Each case says what a correct server answers: "ok", or the machine `code` of the error (SPEC), judged with
OLDPHOTO_MAX_PIXELS at its default of 40 000 000. Server tests post `data` as `filename` with `content_type`.
"""

from __future__ import annotations

import functools
import io
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, TiffImagePlugin

MAX_PIXELS = 40_000_000

OK = "ok"
TOO_MANY_PIXELS = "too_many_pixels"
INVALID = "invalid_image"
UNSUPPORTED = "unsupported_format"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    filename: str
    content_type: str
    expect: str  # "ok" or the error code a correct server answers
    note: str
    # For "ok" cases, where known: the decoded (width, height) after EXIF orientation, and whether it has alpha.
    size: tuple[int, int] | None = None
    alpha: bool | None = None


# ---------------------------------------------------------------------------------------------- pictures

# An asymmetric picture whose upright form is known: four coloured quadrants, wider than tall.
UPRIGHT_SIZE = (48, 32)
UPRIGHT_QUADRANTS = {  # (row, column) of the quadrant -> RGB
    (0, 0): (255, 0, 0),
    (0, 1): (0, 255, 0),
    (1, 0): (0, 0, 255),
    (1, 1): (255, 255, 255),
}

# The transpose that, applied to the upright picture, gives what a camera stores under each orientation value
# (the inverse of what the viewer must do: 6 and 8 swap, the others undo themselves).
_STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright_picture() -> Image.Image:
    width, height = UPRIGHT_SIZE
    pixels = np.zeros((height, width, 3), np.uint8)
    for (row, col), colour in UPRIGHT_QUADRANTS.items():
        pixels[row * height // 2 : (row + 1) * height // 2, col * width // 2 : (col + 1) * width // 2] = colour
    return Image.fromarray(pixels)


def stored_picture(orientation: int) -> Image.Image:
    """The upright picture as a camera would store it when writing `orientation` into EXIF."""
    picture = upright_picture()
    return picture if orientation == 1 else picture.transpose(_STORED_AS[orientation])


def _noise(width: int, height: int, mode: str = "RGB", seed: int = 7) -> Image.Image:
    # Noise does not compress, so nearly every byte of the file is pixel data and any cut lands in it.
    channels = len(Image.new(mode, (1, 1)).getbands())
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)


def _encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


def _exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# ------------------------------------------------------------------------------------ hand-made formats


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(width: int, height: int, idat: bytes, *, depth: int = 8, colour: int = 0, extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )


def _deflate_zeros(total: int, piece: int = 1 << 20) -> bytes:
    """zlib stream of `total` zero bytes, compressed in pieces so building it never holds them all."""
    packer = zlib.compressobj(9)
    parts = [packer.compress(bytes(min(piece, total - start))) for start in range(0, total, piece)]
    return b"".join(parts) + packer.flush()


def _gif(screen: tuple[int, int], frame: tuple[int, int, int, int]) -> bytes:
    """A GIF with a 2-colour table and one frame (left, top, width, height) holding a single LZW code."""
    header = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"," + struct.pack("<HHHHB", *frame, 0)
    return header + descriptor + b"\x02\x02\x44\x01\x00" + b";"


def _bmp(width: int, height: int, *, bits: int = 24, compression: int = 0, pixels: bytes = b"") -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, compression, len(pixels), 2835, 2835, 0, 0)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


def _tiff(
    width: int, height: int, pixels: bytes, *, extra: tuple[tuple[int, int, int], ...] = (), tiled: bool = False
) -> bytes:
    """Little-endian 8-bit grey TIFF with one strip (or tile) of `pixels`, uncompressed unless `extra` says
    otherwise: `extra` adds or replaces (tag, type, value) entries."""
    offsets_tag, counts_tag = (324, 325) if tiled else (273, 279)
    entries = {256: (4, width), 257: (4, height), 258: (3, 8), 259: (3, 1), 262: (3, 1), 277: (3, 1)}
    entries[counts_tag] = (4, len(pixels))
    if not tiled:
        entries[278] = (4, height)
    entries.update({tag: (kind, value) for tag, kind, value in extra})
    ifd_at = 8
    data_at = ifd_at + 2 + 12 * (len(entries) + 1) + 4
    entries[offsets_tag] = (4, data_at)
    ifd = struct.pack("<H", len(entries))
    for tag in sorted(entries):
        kind, value = entries[tag]
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_at) + ifd + pixels


def _tiled_tiff(width: int, height: int, *, tile: int, compression: int) -> bytes:
    """A tiled TIFF whose tiles are `tile` x `tile` pixels; 64 bytes stand for the first tile's data."""
    return _tiff(width, height, bytes(64), extra=((259, 3, compression), (322, 4, tile), (323, 4, tile)), tiled=True)


def _bigtiff_header(width: int, height: int) -> bytes:
    entries = [(256, 16, width), (257, 16, height)]
    ifd = struct.pack("<Q", len(entries))
    ifd += b"".join(struct.pack("<HHQQ", tag, kind, 1, value) for tag, kind, value in entries)
    return b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd + struct.pack("<Q", 0)


def _riff_webp(chunks: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOF0 or SOF2) declaring another size."""
    for sof in (b"\xff\xc0", b"\xff\xc2"):
        at = jpeg.find(sof)
        if at >= 0:
            size_at = at + 5
            return jpeg[:size_at] + struct.pack(">HH", height, width) + jpeg[size_at + 4 :]
    raise ValueError("no SOF0/SOF2 marker")


def _jpeg_scan_bomb(progressive: bytes, copies: int) -> bytes:
    """A progressive JPEG with its first scan repeated: libjpeg only warns, and redoes the work each time."""
    start = progressive.find(b"\xff\xda")
    end = start + 2
    while True:  # the scan ends at the first marker that is neither stuffing (FF00) nor a restart (FFD0-D7)
        end = progressive.find(b"\xff", end + 1)
        follower = progressive[end + 1]
        if follower != 0 and not 0xD0 <= follower <= 0xD7:
            break
    scan = progressive[start:end]
    return progressive[:end] + scan * copies + progressive[end:]


def jpeg_segment_bomb(segments: int = 6_000_000) -> bytes:
    """Issue 11's attack: SOI, `segments` empty APP0 segments (4 bytes each: 24 MB by default), then an 8x8 photo.

    Every size limit holds, but Pillow walks the segments one by one in Python and keeps each: about 10 s and
    880 MB for the default, before libjpeg sees a byte.
    """
    picture = _encode(Image.new("RGB", (8, 8), (90, 60, 30)), "JPEG", quality=90)
    return b"\xff\xd8" + b"\xff\xe0\x00\x02" * segments + picture[2:]


def slow_progressive_jpeg(side: int = 4000, scans: int = 240) -> bytes:
    """A valid JPEG within every limit that takes seconds to decode: a flat `side` x `side` progressive photo whose
    first scan is repeated (under the 256-scan cap). About 4 s for the default on a 2-core machine, 11 MB."""
    flat = _encode(Image.new("RGB", (side, side), (120, 80, 40)), "JPEG", quality=80, progressive=True)
    return _jpeg_scan_bomb(flat, scans)


def time_limit_for(slow: bytes, wanted: float, margin: float = 2.5, floor: float = 0.2) -> float:
    """A decode time limit that `slow` surely runs past: `wanted`, or its decode time here over `margin` where that
    is less (a faster machine or decoder), never below `floor`. Fails, saying so, when even that cannot hold: a
    test of the time limit whose file decodes within it would test nothing."""
    started = time.perf_counter()
    with Image.open(io.BytesIO(slow)) as im:
        im.load()
    took = time.perf_counter() - started
    limit = min(wanted, took / margin)
    assert limit >= floor, f"the slow JPEG decodes in {took:.3f} s here: too fast to test a time limit of {floor} s"
    return limit


def _zip_archive() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("Payload.class", b"\xca\xfe\xba\xbe" + bytes(32))
    return out.getvalue()


# --------------------------------------------------------------------------------------------- the corpus

_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "tif": "image/tiff",
    "bmp": "image/bmp",
}


def _case(
    name: str,
    data: bytes,
    ext: str,
    expect: str,
    note: str,
    *,
    size: tuple[int, int] | None = None,
    alpha: bool | None = None,
) -> Case:
    return Case(name, data, f"{name}.{ext}", _TYPES[ext], expect, note, size, alpha)


def _bombs() -> Iterator[Case]:
    tiny_rows = zlib.compress(bytes(100_001 * 4))
    yield _case(
        "png_ihdr_bomb",
        _png(100_000, 100_000, tiny_rows),
        "png",
        TOO_MANY_PIXELS,
        "IHDR declares 10 gigapixels; the file is a few hundred bytes",
    )
    yield _case(
        "png_wide_bomb", _png(2**31 - 1, 1, tiny_rows), "png", TOO_MANY_PIXELS, "the widest width PNG allows, one row"
    )
    yield _case(
        "png_deflate_bomb",
        _png(8000, 8000, _deflate_zeros(8000 * 1001), depth=1),
        "png",
        TOO_MANY_PIXELS,
        "a real 64-megapixel 1-bit PNG whose deflate stream is a few kilobytes",
    )
    yield _case(
        "gif_screen_bomb",
        _gif((65535, 65535), (0, 0, 1, 1)),
        "gif",
        TOO_MANY_PIXELS,
        "a 65535x65535 logical screen around a 1x1 frame",
    )
    yield _case(
        "gif_frame_bomb",
        _gif((1, 1), (0, 0, 65535, 65535)),
        "gif",
        TOO_MANY_PIXELS,
        "a 1x1 screen whose first frame is 65535x65535 (Pillow grows the canvas to hold it)",
    )
    yield _case(
        "gif_offset_bomb",
        _gif((10, 10), (65000, 65000, 10, 10)),
        "gif",
        TOO_MANY_PIXELS,
        "a small frame placed far outside a small screen",
    )
    yield _case(
        "tiff_bomb",
        _tiff(100_000, 100_000, bytes(64)),
        "tif",
        TOO_MANY_PIXELS,
        "TIFF tags declare 10 gigapixels over 64 bytes of strip",
    )
    yield _case(
        "bigtiff_bomb",
        _bigtiff_header(1_000_000, 1_000_000),
        "tif",
        TOO_MANY_PIXELS,
        "BigTIFF header declaring a terapixel",
    )
    yield _case(
        "bmp_bomb",
        _bmp(50_000, 50_000, pixels=bytes(16)),
        "bmp",
        TOO_MANY_PIXELS,
        "BMP header declaring 2.5 gigapixels",
    )
    yield _case(
        "bmp_topdown_bomb",
        _bmp(60_000, -60_000, pixels=bytes(16)),
        "bmp",
        TOO_MANY_PIXELS,
        "negative (top-down) height must count as its absolute value",
    )
    yield _case(
        "bmp_rle_bomb",
        _bmp(30_000, 30_000, bits=8, compression=1, pixels=bytes(1024) + b"\x00\x01"),
        "bmp",
        TOO_MANY_PIXELS,
        "RLE8 BMP: the end-of-bitmap code makes 900 megapixels from two bytes",
    )
    yield from _webp_bombs()
    yield from _jpeg_bombs()


def _webp_bombs() -> Iterator[Case]:
    lossless = _encode(Image.new("RGB", (1, 1)), "WEBP", lossless=True)
    lossy = _encode(_noise(16, 16), "WEBP", quality=80)
    vp8x = struct.pack("<B3x", 0) + (16_000 - 1).to_bytes(3, "little") * 2
    yield _case(
        "webp_vp8x_bomb",
        _riff_webp(_riff_chunk(b"VP8X", vp8x) + lossless[12:]),
        "webp",
        TOO_MANY_PIXELS,
        "extended WebP whose canvas is 16000x16000 around a 1x1 picture",
    )
    bits = struct.pack("<I", (16383) | (16383 << 14) | (1 << 28))
    yield _case(
        "webp_vp8l_bomb",
        lossless[:21] + bits + lossless[25:],
        "webp",
        TOO_MANY_PIXELS,
        "lossless WebP header patched to 16384x16384",
    )
    yield _case(
        "webp_vp8_bomb",
        lossy[:26] + struct.pack("<HH", 16383, 16383) + lossy[30:],
        "webp",
        TOO_MANY_PIXELS,
        "lossy WebP frame header patched to 16383x16383",
    )


def _jpeg_bombs() -> Iterator[Case]:
    baseline = _encode(_noise(16, 16), "JPEG", quality=80)
    progressive = _encode(_noise(64, 64), "JPEG", quality=80, progressive=True)
    yield _case(
        "jpeg_sof_bomb",
        _jpeg_with_size(baseline, 65500, 65500),
        "jpg",
        TOO_MANY_PIXELS,
        "baseline JPEG frame header patched to 65500x65500",
    )
    yield _case(
        "jpeg_progressive_sof_bomb",
        _jpeg_with_size(progressive, 60000, 60000),
        "jpg",
        TOO_MANY_PIXELS,
        "progressive JPEG (whole-image coefficient buffer) patched to 60000x60000",
    )
    yield _case(
        "jpeg_scan_bomb",
        _jpeg_scan_bomb(progressive, 400),
        "jpg",
        INVALID,
        "a progressive JPEG of 400+ scans: each costs a pass over the whole image (CPU bomb)",
    )


def _truncated() -> Iterator[Case]:
    picture = _noise(96, 64)
    files = {
        "jpeg": ("jpg", _encode(picture, "JPEG", quality=90)),
        "progressive_jpeg": ("jpg", _encode(picture, "JPEG", quality=90, progressive=True)),
        "png": ("png", _encode(picture, "PNG")),
        "interlaced_png": ("png", _encode(picture, "PNG", interlace=1)),
        "gif": ("gif", _encode(picture.convert("P"), "GIF")),
        "webp_lossy": ("webp", _encode(picture, "WEBP", quality=90)),
        "webp_lossless": ("webp", _encode(picture, "WEBP", lossless=True)),
        "tiff": ("tif", _encode(picture, "TIFF")),
        "tiff_lzw": ("tif", _encode(picture, "TIFF", compression="tiff_lzw")),
        "bmp": ("bmp", _encode(picture, "BMP")),
    }
    for kind, (ext, data) in files.items():
        yield _case(
            f"truncated_{kind}",
            data[: len(data) * 3 // 5],
            ext,
            INVALID,
            "cut at 60%: must fail, never be padded with grey",
        )
    # libtiff writes the directory last, so the cut above removes it; these keep it and cut the strip instead.
    for compression, method in ((5, "tiff_lzw"), (8, "tiff_adobe_deflate"), (32773, "packbits")):
        strip = _tiff_strip(_noise(96, 64, "L"), method)
        cut = _tiff(96, 64, strip[: len(strip) // 2], extra=((259, 3, compression),))
        yield _case(
            f"truncated_strip_{method}",
            cut,
            "tif",
            INVALID,
            "the directory intact, the compressed strip cut in half: libtiff must fail",
        )


def _tiff_strip(im: Image.Image, compression: str) -> bytes:
    """The single compressed strip libtiff writes for a small picture."""
    data = _encode(im, "TIFF", compression=compression)
    with TiffImagePlugin.TiffImageFile(io.BytesIO(data)) as parsed:
        (offset,), (count,) = parsed.tag_v2[273], parsed.tag_v2[279]
    return data[offset : offset + count]


def _corrupt() -> Iterator[Case]:
    png = _encode(_noise(32, 32), "PNG")
    idat = png.find(b"IDAT") + 4
    garbled = png[:idat] + bytes(b ^ 0x5A for b in png[idat : idat + 200]) + png[idat + 200 :]
    yield _case("png_garbled_idat", garbled, "png", INVALID, "deflate stream scrambled (CRC left wrong too)")
    crc_at = len(png) - 16  # the IDAT's CRC sits just before the 12-byte IEND chunk
    yield _case(
        "png_bad_crc",
        png[:crc_at] + bytes(4) + png[crc_at + 4 :],
        "png",
        OK,
        "IDAT intact, its CRC wrong: Pillow (like browsers) does not check it, and the pixels are whole",
        size=(32, 32),
    )
    yield _case(
        "png_no_ihdr",
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IEND", b""),
        "png",
        INVALID,
        "a PNG signature followed directly by IEND",
    )
    yield _case(
        "jpeg_garbage",
        b"\xff\xd8\xff" + np.random.default_rng(1).bytes(2000),
        "jpg",
        INVALID,
        "the JPEG magic number followed by random bytes",
    )
    yield _case(
        "jpeg_no_frame",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9",
        "jpg",
        INVALID,
        "SOI, APP0, EOI: no frame header at all",
    )
    yield _case(
        "gif_no_frame",
        _gif((10, 10), (0, 0, 1, 1))[:19] + b";",
        "gif",
        INVALID,
        "a GIF screen and colour table with no frame",
    )
    yield _case(
        "tiff_no_size",
        _tiff(4, 4, bytes(16))[:8] + struct.pack("<H", 0) + bytes(4),
        "tif",
        INVALID,
        "a TIFF whose first directory is empty",
    )
    yield _case(
        "tiff_strip_outside",
        _tiff(64, 64, bytes(64)),
        "tif",
        INVALID,
        "a 64x64 strip declared but only 64 bytes present",
    )
    yield _case("bmp_bad_depth", _bmp(8, 8, bits=7, pixels=bytes(64)), "bmp", INVALID, "7 bits per pixel")
    yield _case(
        "webp_garbage",
        _riff_webp(_riff_chunk(b"VP8L", b"\x2f" + bytes(4) + b"\xff" * 64)),
        "webp",
        INVALID,
        "a lossless WebP header followed by nonsense",
    )
    ztxt = _png_chunk(b"zTXt", b"Comment\x00\x00" + _deflate_zeros(8 << 20))
    yield _case(
        "tiff_tile_bomb",
        _tiled_tiff(16, 16, tile=32768, compression=5),
        "tif",
        TOO_MANY_PIXELS,
        "a 16x16 LZW TIFF cut into 32768x32768 tiles: libtiff would allocate 1 GB for the first tile",
    )
    yield _case(
        "png_ztxt_bomb",
        _png(1, 1, zlib.compress(b"\x00\x00"), extra=ztxt),
        "png",
        INVALID,
        "a 1x1 PNG whose compressed comment inflates to 8 MB (Pillow stops at 1 MB)",
    )


def _tiny() -> Iterator[Case]:
    yield Case("empty", b"", "empty.jpg", "image/jpeg", UNSUPPORTED, "zero bytes")
    yield Case("one_byte", b"\xff", "one.jpg", "image/jpeg", UNSUPPORTED, "a single byte")
    yield Case("jpeg_soi_only", b"\xff\xd8", "soi.jpg", "image/jpeg", UNSUPPORTED, "two bytes: not yet a JPEG")
    yield _case("jpeg_magic_only", b"\xff\xd8\xff", "jpg", INVALID, "the JPEG magic number and nothing else")
    yield _case("png_signature_only", b"\x89PNG\r\n\x1a\n", "png", INVALID, "the PNG signature alone")
    yield _case("gif_header_only", b"GIF89a", "gif", INVALID, "the GIF version string alone")
    yield _case("webp_header_only", b"RIFF\x04\x00\x00\x00WEBP", "webp", INVALID, "a RIFF/WEBP header, no chunk")
    yield _case("tiff_header_only", b"II*\x00", "tif", INVALID, "TIFF byte order and version, no directory")
    yield _case(
        "bmp_header_only",
        b"BM" + bytes(12) + struct.pack("<I", 40),
        "bmp",
        INVALID,
        "a BMP file header and info header size, nothing else",
    )


_SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100" '
    b'onload="alert(document.cookie)"><script>fetch("/api/jobs")</script><rect width="100" height="100"/></svg>'
)
_HTML = b"<!DOCTYPE html><html><body><script>alert(document.domain)</script></body></html>"


def _not_images() -> Iterator[Case]:
    yield Case("svg_script", _SVG, "drawing.svg", "image/svg+xml", UNSUPPORTED, "SVG with onload and a script")
    yield Case("svg_named_png", _SVG, "photo.png", "image/png", UNSUPPORTED, "SVG dressed as a PNG")
    yield Case(
        "svg_bare",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "x.svg",
        "image/svg+xml",
        UNSUPPORTED,
        "SVG without an XML prolog",
    )
    yield Case("html_script", _HTML, "page.html", "text/html", UNSUPPORTED, "an HTML page with a script")
    yield Case("html_named_jpg", _HTML, "photo.jpg", "image/jpeg", UNSUPPORTED, "HTML dressed as a JPEG")
    yield Case(
        "xml_xxe",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        "data.xml",
        "application/xml",
        UNSUPPORTED,
        "an XML external entity attack",
    )
    yield Case(
        "pdf",
        b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n",
        "scan.pdf",
        "application/pdf",
        UNSUPPORTED,
        "a PDF document",
    )
    yield Case(
        "text", b"Grandma's photo, 1931. Please colorize!\n", "notes.txt", "text/plain", UNSUPPORTED, "plain text"
    )
    yield Case(
        "bm_text",
        b"BMW 328, photographed in 1936 by my grandfather.",
        "car.bmp",
        "image/bmp",
        UNSUPPORTED,
        "text that starts with the BMP letters 'BM'",
    )
    yield Case("zip", _zip_archive(), "photos.zip", "application/zip", UNSUPPORTED, "a ZIP archive")
    yield Case(
        "gzip", b"\x1f\x8b\x08\x00" + bytes(16), "photo.jpg.gz", "application/gzip", UNSUPPORTED, "a gzip header"
    )
    yield Case(
        "heic",
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(32),
        "IMG_0001.HEIC",
        "image/heic",
        UNSUPPORTED,
        "an iPhone HEIC header (not a format we decode)",
    )
    yield Case(
        "shell_script",
        b"#!/bin/sh\nrm -rf / --no-preserve-root\n",
        "photo.jpg",
        "image/jpeg",
        UNSUPPORTED,
        "a shell script dressed as a JPEG",
    )
    yield Case(
        "elf",
        b"\x7fELF\x02\x01\x01" + bytes(57),
        "photo.png",
        "image/png",
        UNSUPPORTED,
        "an executable dressed as a PNG",
    )


def _polyglots() -> Iterator[Case]:
    png = _encode(Image.new("RGB", (20, 10), (10, 200, 30)), "PNG")
    gif = _encode(Image.new("P", (20, 10)), "GIF")
    jpeg = _encode(Image.new("RGB", (20, 10), (200, 10, 30)), "JPEG")
    yield _case("png_html_appended", png + _HTML, "png", OK, "a valid PNG with HTML after IEND", size=(20, 10))
    yield _case("gifar", gif + _zip_archive(), "gif", OK, "GIF+ZIP (GIFAR): a GIF that is also a JAR", size=(20, 10))
    comment = b"\xff\xfe" + struct.pack(">H", 2 + len(_HTML)) + _HTML
    yield _case(
        "jpeg_comment_script",
        jpeg[:2] + comment + jpeg[2:],
        "jpg",
        OK,
        "a JPEG with <script> in a COM segment",
        size=(20, 10),
    )
    text = _png_chunk(b"tEXt", b"Description\x00" + _HTML)
    yield _case(
        "png_text_script", png[:33] + text + png[33:], "png", OK, "a PNG with <script> in a tEXt chunk", size=(20, 10)
    )
    yield Case(
        "html_then_png",
        _HTML + png,
        "photo.png",
        "image/png",
        UNSUPPORTED,
        "HTML first, PNG after: browsers sniff HTML, so it must not pass as an image",
    )
    yield Case(
        "pdf_then_jpeg", b"%PDF-1.4\n" + jpeg, "photo.jpg", "image/jpeg", UNSUPPORTED, "a PDF header before a JPEG"
    )


def _misleading_names() -> Iterator[Case]:
    png = _encode(Image.new("RGB", (12, 8), (90, 90, 90)), "PNG")
    jpeg = _encode(Image.new("RGB", (12, 8), (90, 90, 90)), "JPEG")
    yield Case("png_named_jpg", png, "photo.jpg", "image/jpeg", OK, "PNG bytes, JPEG name and type", (12, 8))
    yield Case("jpeg_named_png", jpeg, "photo.png", "image/png", OK, "JPEG bytes, PNG name and type", (12, 8))
    yield Case("png_named_php", png, "shell.php", "application/x-php", OK, "an image named like a script", (12, 8))
    yield Case("png_typed_html", png, "photo.png", "text/html", OK, "a PNG declared as text/html", (12, 8))
    yield Case("png_no_type", png, "photo", "application/octet-stream", OK, "no extension, generic type", (12, 8))
    yield Case(
        "png_path_traversal",
        png,
        "../../../../etc/cron.d/photo.png",
        "image/png",
        OK,
        "a file name that climbs out of the upload folder",
        (12, 8),
    )
    yield Case(
        "png_unicode_name",
        png,
        "照片 ½ \u202egnp.exe",
        "image/png",
        OK,
        "non-ASCII name with a right-to-left override",
        (12, 8),
    )
    yield Case("png_long_name", png, "a" * 1000 + ".png", "image/png", OK, "a 1000-character file name", (12, 8))


def _orientations() -> Iterator[Case]:
    for value in range(1, 9):
        data = _encode(stored_picture(value), "JPEG", quality=95, exif=_exif_with_orientation(value))
        yield _case(f"jpeg_orientation_{value}", data, "jpg", OK, f"EXIF orientation {value}", size=UPRIGHT_SIZE)
    png = _encode(stored_picture(6), "PNG", exif=_exif_with_orientation(6))
    yield _case("png_orientation_6", png, "png", OK, "orientation 6 in a PNG eXIf chunk", size=UPRIGHT_SIZE)
    tiff = _encode(stored_picture(8), "TIFF", tiffinfo={0x0112: 8})
    yield _case("tiff_orientation_8", tiff, "tif", OK, "orientation 8 as a TIFF tag", size=UPRIGHT_SIZE)
    webp = _encode(stored_picture(3), "WEBP", lossless=True, exif=_exif_with_orientation(3))
    yield _case("webp_orientation_3", webp, "webp", OK, "orientation 3 in a WebP EXIF chunk", size=UPRIGHT_SIZE)
    broken = _encode(stored_picture(1), "JPEG", exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xff")
    yield _case(
        "jpeg_broken_exif", broken, "jpg", OK, "an EXIF block pointing outside itself: ignored", size=UPRIGHT_SIZE
    )
    bogus = _encode(stored_picture(1), "JPEG", exif=_exif_with_orientation(9))
    yield _case(
        "jpeg_orientation_9", bogus, "jpg", OK, "orientation value 9 does not exist: ignored", size=UPRIGHT_SIZE
    )


def _modes() -> Iterator[Case]:
    yield _case(
        "cmyk_jpeg",
        _encode(Image.new("CMYK", (16, 8), (255, 0, 0, 0)), "JPEG", quality=95),
        "jpg",
        OK,
        "a CMYK JPEG (Pillow writes Adobe's inverted form): pure cyan",
        size=(16, 8),
        alpha=False,
    )
    yield _case(
        "cmyk_tiff",
        _encode(Image.new("CMYK", (16, 8), (0, 255, 0, 0)), "TIFF"),
        "tif",
        OK,
        "a CMYK TIFF: pure magenta",
        size=(16, 8),
        alpha=False,
    )
    ramp16 = np.array([[0, 257, 32768, 65535]] * 2, np.uint16)
    yield _case(
        "png_16bit_gray",
        _encode(Image.fromarray(ramp16), "PNG"),
        "png",
        OK,
        "16-bit grey ramp 0, 257, 32768, 65535: must scale to 0, 1, 128, 255",
        size=(4, 2),
        alpha=False,
    )
    yield _case(
        "tiff_16bit_gray",
        _encode(Image.fromarray(ramp16), "TIFF"),
        "tif",
        OK,
        "the same 16-bit ramp as TIFF",
        size=(4, 2),
        alpha=False,
    )
    yield _case("png_16bit_rgb", _png16_rgb(), "png", OK, "16-bit RGB PNG (hand-made)", size=(4, 2), alpha=False)
    floats = np.array([[0.0, 0.25, 0.5, 1.0]] * 2, np.float32)
    yield _case(
        "tiff_float",
        _encode(Image.fromarray(floats, "F"), "TIFF"),
        "tif",
        OK,
        "32-bit float TIFF in 0..1",
        size=(4, 2),
        alpha=False,
    )
    yield _case(
        "png_palette_transparent",
        _palette_png(),
        "png",
        OK,
        "a palette PNG whose tRNS makes index 0 transparent",
        size=(8, 4),
        alpha=True,
    )
    opaque = _encode(Image.new("RGB", (8, 4), (200, 100, 50)).quantize(4), "PNG")
    yield _case("png_palette_opaque", opaque, "png", OK, "a palette PNG, no transparency", size=(8, 4), alpha=False)
    yield _case(
        "png_gray", _encode(Image.new("L", (8, 4), 77), "PNG"), "png", OK, "8-bit grey", size=(8, 4), alpha=False
    )
    yield _case(
        "jpeg_gray", _encode(Image.new("L", (8, 4), 77), "JPEG"), "jpg", OK, "grey JPEG", size=(8, 4), alpha=False
    )
    yield _case(
        "png_la",
        _encode(Image.new("LA", (8, 4), (77, 128)), "PNG"),
        "png",
        OK,
        "grey with alpha",
        size=(8, 4),
        alpha=True,
    )
    yield _case(
        "png_rgba",
        _encode(Image.new("RGBA", (8, 4), (10, 20, 30, 40)), "PNG"),
        "png",
        OK,
        "RGBA: alpha must survive, separately",
        size=(8, 4),
        alpha=True,
    )
    # TIFF "associated" alpha: colours stored premultiplied (grey 50 at alpha 128 is stored as 25).
    yield _case(
        "tiff_gray_premultiplied",
        _tiff(4, 2, bytes([25, 128]) * 8, extra=((277, 3, 2), (338, 3, 1))),
        "tif",
        OK,
        "grey with associated alpha (Pillow mode La): must come out un-premultiplied",
        size=(4, 2),
        alpha=True,
    )
    yield _case(
        "tiff_rgb_premultiplied",
        _tiff(4, 2, bytes([25, 50, 100, 128]) * 8, extra=((262, 3, 2), (277, 3, 4), (338, 3, 1))),
        "tif",
        OK,
        "RGB with associated alpha (RGBa): must come out un-premultiplied",
        size=(4, 2),
        alpha=True,
    )
    yield _case(
        "png_1bit",
        _encode(_half_white("1"), "PNG"),
        "png",
        OK,
        "1-bit PNG: left black, right white",
        size=(8, 4),
        alpha=False,
    )
    yield _case(
        "tiff_1bit",
        _encode(_half_white("1"), "TIFF", compression="group4"),
        "tif",
        OK,
        "1-bit fax-compressed TIFF: left black, right white",
        size=(8, 4),
        alpha=False,
    )
    yield _case(
        "bmp_24",
        _encode(Image.new("RGB", (7, 3), (1, 2, 3)), "BMP"),
        "bmp",
        OK,
        "24-bit BMP with padded rows",
        size=(7, 3),
        alpha=False,
    )
    yield _case("bmp_8bit", _encode(Image.new("L", (7, 3), 9), "BMP"), "bmp", OK, "8-bit BMP", size=(7, 3))
    yield _case("webp_lossy", _encode(_noise(20, 12), "WEBP"), "webp", OK, "lossy WebP", size=(20, 12), alpha=False)
    yield _case(
        "webp_lossless_alpha",
        _encode(Image.new("RGBA", (20, 12), (1, 2, 3, 4)), "WEBP", lossless=True),
        "webp",
        OK,
        "lossless WebP with alpha",
        size=(20, 12),
        alpha=True,
    )
    yield _case(
        "gif_transparent",
        _encode(Image.new("P", (9, 5)), "GIF", transparency=0),
        "gif",
        OK,
        "a GIF whose colour 0 is transparent",
        size=(9, 5),
        alpha=True,
    )


def _half_white(mode: str) -> Image.Image:
    im = Image.new(mode, (8, 4), 0)
    im.paste(255 if mode != "1" else 1, (4, 0, 8, 4))
    return im


def _png16_rgb() -> bytes:
    rows = b"".join(b"\x00" + struct.pack(">12H", *([0, 32768, 65535] * 4)) for _ in range(2))
    return _png(4, 2, zlib.compress(rows), depth=16, colour=2)


def _palette_png() -> bytes:
    im = Image.new("P", (8, 4), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (4, 0, 8, 4))
    return _encode(im, "PNG", transparency=0)


def _frames_and_shapes() -> Iterator[Case]:
    frames = [Image.new("RGB", (10, 6), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    gif = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    yield _case("gif_animated", gif, "gif", OK, "three frames: the first (red) is the one decoded", size=(10, 6))
    apng = _encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)
    yield _case("apng", apng, "png", OK, "animated PNG: the first (red) frame", size=(10, 6))
    webp = _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    yield _case("webp_animated", webp, "webp", OK, "animated WebP: the first (red) frame", size=(10, 6))
    tiff = _encode(frames[0], "TIFF", save_all=True, append_images=[Image.new("RGB", (30, 30))])
    yield _case("tiff_multipage", tiff, "tif", OK, "two pages: the first is decoded", size=(10, 6))
    yield _case("png_1x1", _encode(Image.new("RGB", (1, 1), (5, 6, 7)), "PNG"), "png", OK, "one pixel", size=(1, 1))
    yield _case(
        "png_wide_strip", _encode(Image.new("L", (20000, 10), 50), "PNG"), "png", OK, "20000x10", size=(20000, 10)
    )
    yield _case(
        "png_tall_strip", _encode(Image.new("L", (10, 20000), 50), "PNG"), "png", OK, "10x20000", size=(10, 20000)
    )
    yield _case(
        "jpeg_progressive",
        _encode(_noise(40, 30), "JPEG", progressive=True),
        "jpg",
        OK,
        "a progressive JPEG",
        size=(40, 30),
    )
    yield _case(
        "png_interlaced", _encode(_noise(40, 30), "PNG", interlace=1), "png", OK, "Adam7 interlacing", size=(40, 30)
    )
    yield _case(
        "tiff_lzw", _encode(_noise(40, 30), "TIFF", compression="tiff_lzw"), "tif", OK, "LZW TIFF", size=(40, 30)
    )


def _header_bombs() -> Iterator[Case]:
    """Files within every size limit whose headers make Pillow take a step per segment, chunk or byte in Python."""
    picture = _encode(Image.new("RGB", (8, 8), (90, 60, 30)), "JPEG", quality=90)
    yield _case(
        "jpeg_segment_bomb",
        jpeg_segment_bomb(100_000),
        "jpg",
        INVALID,
        "100,000 empty APP0 segments before an 8x8 picture (the 24 MB attack of issue 11, scaled down)",
    )
    yield _case(
        "jpeg_stray_bytes_bomb",
        b"\xff\xd8\xff\xfe\x00\x02" + bytes(200_000) + picture[2:],
        "jpg",
        INVALID,
        "200 KB of junk between two segments: libjpeg skips it, Pillow reads it a byte at a time",
    )
    yield _case(
        "jpeg_fill_bytes_bomb",
        b"\xff\xd8" + b"\xff" * 200_000 + picture[2:],
        "jpg",
        INVALID,
        "200,000 fill bytes (0xFF) before a marker",
    )
    png = _encode(Image.new("RGB", (8, 8)), "PNG")
    idat = png.find(b"IDAT") - 4
    yield _case(
        "png_chunk_bomb",
        png[:33] + _png_chunk(b"abCd", b"") * 100_000 + png[33:],
        "png",
        INVALID,
        "100,000 empty ancillary chunks before the pixel data",
    )
    yield _case(
        "png_idat_bomb",
        png[:idat] + _png_chunk(b"IDAT", b"") * 30_000 + png[idat:],
        "png",
        INVALID,
        "the pixel data cut into 30,000 chunks, nearly all empty",
    )
    gif = _gif((8, 8), (0, 0, 8, 8))
    yield _case(
        "gif_block_bomb",
        gif[:19] + b"!\xfe" + b"\x01x" * 70_000 + b"\x00" + gif[19:],
        "gif",
        INVALID,
        "a comment of 70,000 one-byte blocks before the first frame",
    )
    yield _case(
        "tiff_tag_bomb",
        _tiff(4, 4, bytes(16), extra=tuple((50_000 + i, 1, 0) for i in range(5000))),
        "tif",
        INVALID,
        "5,000 tags on the first page",
    )


_SECTIONS: tuple[Callable[[], Iterator[Case]], ...] = (
    _bombs,
    _truncated,
    _corrupt,
    _tiny,
    _not_images,
    _polyglots,
    _misleading_names,
    _orientations,
    _modes,
    _frames_and_shapes,
    _header_bombs,
)


@functools.cache
def _built() -> tuple[Case, ...]:
    cases = tuple(case for section in _SECTIONS for case in section())
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


def hostile_corpus() -> list[Case]:
    """Every case, built once per process (a few hundred milliseconds) and shared."""
    return list(_built())


# ===================================================================================== hostile requests
#
# Not files: the other things a client sends that a server must parse (issue 11, item 5). Each `RequestCase` is
# one malformed value in one place and what a correct server answers: a 4xx with the SPEC error shape and its
# `code`, or on an open WebSocket an `error` event with its `code`, never a 500 or a traceback. Where:
#   token          the Authorization bearer (REST and SSE) and the WebSocket's `bearer, <token>` (403 handshake)
#   workflow       the `workflow` form field of POST /api/jobs, posted with a valid photo
#   resume         SSE's Last-Event-ID header and `?after_seq=` (REST), and the WebSocket's `?after_seq=`
#   ws_message     a whole text message on an open WebSocket
# A `value` given as bytes goes into a header as those bytes (latin-1 on the wire), a str as its UTF-8.

UNAUTHORIZED = "unauthorized"
INVALID_WORKFLOW = "invalid_workflow"
INVALID_REQUEST = "invalid_request"
BAD_MESSAGE = "bad_message"
NOTHING_LEFT = "204"  # a valid resume point past the end of a finished job's log


@dataclass(frozen=True)
class RequestCase:
    name: str
    where: str  # token, workflow, resume, ws_message
    value: str | bytes
    expect: str  # the error `code` a correct server answers (or NOTHING_LEFT)
    note: str


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned_token(header: bytes, payload: bytes = b'{"sub": "mallory", "exp": 9999999999}') -> str:
    return f"{_b64(header)}.{_b64(payload)}.{_b64(b'not-a-signature')}"


def _tokens() -> Iterator[RequestCase]:
    yield RequestCase("alg_list", "token", _unsigned_token(b'{"alg": ["HS256"], "typ": "JWT"}'), UNAUTHORIZED, "alg as a list: was a 500 with a traceback")
    yield RequestCase("alg_object", "token", _unsigned_token(b'{"alg": {"HS256": 1}}'), UNAUTHORIZED, "alg as an object")
    yield RequestCase("alg_null", "token", _unsigned_token(b'{"alg": null}'), UNAUTHORIZED, "alg null")
    yield RequestCase("header_nested_5000", "token", _unsigned_token(b"[" * 5000), UNAUTHORIZED, "a header nested past the parser's depth")
    yield RequestCase("header_bigint", "token", _unsigned_token(b'{"alg": ' + b"9" * 5000 + b"}"), UNAUTHORIZED, "a 5000-digit number in the header")
    yield RequestCase("header_not_utf8", "token", _unsigned_token(b"\xff\xfe\xfd"), UNAUTHORIZED, "a header that is not UTF-8")
    yield RequestCase("kid_list", "token", _unsigned_token(b'{"alg": "HS256", "kid": [1]}'), UNAUTHORIZED, "kid as a list")
    yield RequestCase("crit_number", "token", _unsigned_token(b'{"alg": "HS256", "crit": 5}'), UNAUTHORIZED, "crit as a number")
    yield RequestCase("four_parts", "token", "a.b.c.d", UNAUTHORIZED, "four segments")
    yield RequestCase("latin1_bytes", "token", b"\xb2\xb3.\xe9.\xff", UNAUTHORIZED, "bytes outside ASCII in the header")


def _workflows() -> Iterator[RequestCase]:
    def seed(node: dict[str, object]) -> str:
        import json

        return json.dumps({"nodes": [{"id": "load", "type": "LoadImage"}, node, {"id": "save", "type": "SaveImage", "inputs": {"images": "x.image"}}]})

    yield RequestCase("array_nested_5000", "workflow", "[" * 5000, INVALID_WORKFLOW, "RecursionError in the JSON parser: was a 500")
    yield RequestCase("object_nested_5000", "workflow", '{"a":' * 5000 + "1" + "}" * 5000, INVALID_WORKFLOW, "nested objects")
    yield RequestCase("nested_past_the_cap", "workflow", '{"steps": ' + "[" * 40 + "]" * 40 + "}", INVALID_WORKFLOW, "parses, but deeper than the 16-level cap")
    yield RequestCase(
        "deep_in_an_ignored_field",
        "workflow",
        '{"nodes": [{"id": "l", "type": "LoadImage"}, {"id": "s", "type": "SaveImage", "inputs": {"images": "l.image"}}], "notes": '
        + "[" * 500 + "]" * 500 + "}",
        INVALID_WORKFLOW,
        "valid but for an extra key nested 500 deep, which would have reached the worker's parser",
    )
    yield RequestCase("int_5000_digits", "workflow", '{"a": ' + "9" * 5000 + "}", INVALID_WORKFLOW, "past Python's integer-string limit: was a 500")
    yield RequestCase("comfy_inputs_list", "workflow", '{"1": {"class_type": "LoadImage", "inputs": [1]}}', INVALID_WORKFLOW, "was a 500")
    yield RequestCase("seed_inputs_list", "workflow", '{"nodes": [{"id": "a", "type": "LoadImage", "inputs": [1]}]}', INVALID_WORKFLOW, "was a 500")
    yield RequestCase("seed_params_string", "workflow", '{"nodes": [{"id": "a", "type": "LoadImage", "params": "abc"}]}', INVALID_WORKFLOW, "was a 500")
    yield RequestCase("output_superscript", "workflow", seed({"id": "x", "type": "Sharpen", "inputs": {"image": "load.\u00b2"}}), INVALID_WORKFLOW, "'²'.isdigit() is True; int('²') fails")
    yield RequestCase("output_5000_digits", "workflow", seed({"id": "x", "type": "Sharpen", "inputs": {"image": "load." + "9" * 5000}}), INVALID_WORKFLOW, "an output index past the integer-string limit")
    yield RequestCase("param_huge_int", "workflow", seed({"id": "x", "type": "Denoise", "inputs": {"image": "load.image"}, "params": {"strength": 10**4000}}), INVALID_WORKFLOW, "a 4001-digit parameter")
    # Issue 11, item 1: six tiny photos, each with its own DDColor input size, built six ONNX exports (~256 MB each, never
    # purged) and six engines in the worker; 63 sizes were legal. Now a short list (models/registry.py INPUT_SIZES).
    for size in (64, 96, 160, 288, 448, 1024):
        yield RequestCase(
            f"ddcolor_input_size_{size}", "workflow", seed({"id": "x", "type": "DDColor", "inputs": {"image": "load.image"}, "params": {"input_size": size}}),
            INVALID_WORKFLOW, "a model input size off the short list: each size was an export on disk and an engine in memory",
        )


def _resume_points() -> Iterator[RequestCase]:
    yield RequestCase("superscript_two", "resume", b"\xb2", INVALID_REQUEST, "'²' passes str.isdigit(): was a 500")
    yield RequestCase("arabic_indic_three", "resume", "\u0663".encode(), INVALID_REQUEST, "a Unicode digit, sent as UTF-8 bytes")
    yield RequestCase("digits_5000", "resume", "9" * 5000, INVALID_REQUEST, "past Python's integer-string limit: was a 500")
    yield RequestCase("two_to_the_63", "resume", str(2**63), INVALID_REQUEST, "past a signed 64-bit integer: the store failed")
    yield RequestCase("two_to_the_64", "resume", str(2**64), INVALID_REQUEST, "past any integer column")
    yield RequestCase("negative", "resume", "-1", INVALID_REQUEST, "negative")
    yield RequestCase("plus_sign", "resume", "+1", INVALID_REQUEST, "int() takes it; a seq has no sign")
    yield RequestCase("underscore", "resume", "1_0", INVALID_REQUEST, "int() takes it; a seq does not")
    yield RequestCase("largest", "resume", str(2**63 - 1), NOTHING_LEFT, "the largest valid value: nothing left to send")


def _ws_messages() -> Iterator[RequestCase]:
    yield RequestCase("nested_4000", "ws_message", "[" * 4000, BAD_MESSAGE, "RecursionError in the JSON parser, under the 4 KB cap")
    yield RequestCase("after_seq_2_63", "ws_message", '{"type": "subscribe", "job_id": "JOB", "after_seq": ' + str(2**63) + "}", BAD_MESSAGE, "past a signed 64-bit integer")
    yield RequestCase("after_seq_4000_digits", "ws_message", '{"type": "subscribe", "job_id": "JOB", "after_seq": ' + "9" * 4000 + "}", BAD_MESSAGE, "a 4000-digit after_seq")
    yield RequestCase("after_seq_superscript", "ws_message", '{"type": "subscribe", "job_id": "JOB", "after_seq": "\u00b2"}', BAD_MESSAGE, "a Unicode digit as a string")
    yield RequestCase("after_seq_float", "ws_message", '{"type": "subscribe", "job_id": "JOB", "after_seq": 1e300}', BAD_MESSAGE, "a float far past any seq")
    yield RequestCase("job_id_nul", "ws_message", '{"type": "subscribe", "job_id": "\\u0000"}', BAD_MESSAGE, "a NUL, which PostgreSQL refuses in text")


_REQUEST_SECTIONS: tuple[Callable[[], Iterator[RequestCase]], ...] = (_tokens, _workflows, _resume_points, _ws_messages)


def hostile_requests(where: str | None = None) -> list[RequestCase]:
    """Every request case (or those for one place); `JOB` in a ws_message stands for a job of the sender's."""
    cases = [case for section in _REQUEST_SECTIONS for case in section() if where in (None, case.where)]
    assert len({c.name for c in cases}) == len(cases), "case names must be unique"
    return cases


# ===================================================================================== over budget
#
# Issue 11, item 1 ("Hostile jobs"): small, valid uploads whose workflow asks for more work than a worker can give.
# Each ran (or would have run) in a worker until it swapped, died or reached the job time limit; each must now be
# refused at admission (or, like Upscale at tile 1024 with animevideov3, estimated at what it measured and run within
# the budget), from the header's size and before any decode, with 422 `over_budget` and the numbers
# (engine/cost.py, with the default caps). `over` is the words of the cap the message names.
# The sizes a workflow may give DDColor are a short list: the six photos with six input sizes are 400s instead,
# the `ddcolor_input_size_*` cases of `hostile_requests("workflow")`.

OVER_BUDGET = "over_budget"
OVER_RESULT = "its result would be"
OVER_MEMORY = "of memory"
OVER_SECONDS = "it would take about"


@dataclass(frozen=True)
class BudgetCase:
    name: str
    data: bytes  # the upload: a PNG of width x height
    width: int
    height: int
    workflow: str
    over: str
    note: str


def _flat_gray_png(width: int, height: int) -> bytes:
    """A valid flat gray PNG: every row a filter byte and zeros, deflated to a few tens of KB whatever its size."""
    return _png(width, height, _deflate_zeros((width + 1) * height))


def _small_png(side: int) -> bytes:
    return _encode(_noise(side, side), "PNG")


def _chain(*nodes: tuple[str, dict[str, object]]) -> str:
    import json

    specs: list[dict[str, object]] = [{"id": "load", "type": "LoadImage"}]
    for i, (node_type, params) in enumerate(nodes, 1):
        specs.append({"id": f"{node_type.lower()}_{i}", "type": node_type, "inputs": {"image": f"{specs[-1]['id']}.image"}, "params": params})
    specs.append({"id": "save", "type": "SaveImage", "inputs": {"images": f"{specs[-1]['id']}.image"}})
    return json.dumps({"nodes": specs})


def _budget_cases() -> Iterator[BudgetCase]:
    widest = ("Denoise", {"strength": 30, "template_window": 21, "search_window": 45})
    yield BudgetCase(
        "thirty_widest_denoises_on_40_mp", _flat_gray_png(8000, 5000), 8000, 5000, _chain(*[widest] * 30), OVER_SECONDS,
        "a 40 KB flat 40 MP PNG with 30 Denoise nodes at their widest windows: ran to the 600 s job limit",
    )
    x4 = ("Upscale", {"model": "realesr-animevideov3-x4", "tile": 256})
    yield BudgetCase(
        "three_x4_upscales_of_128", _small_png(128), 128, 128, _chain(x4, x4, x4), OVER_RESULT,
        "three x4 upscales of a 128² PNG: an 8192² result, 1.7x the pixel limit; nothing bounded results",
    )
    yield BudgetCase(
        "x4plus_tile_1024_on_1024", _small_png(1024), 1024, 1024,
        _chain(("Upscale", {"model": "realesrgan-x4plus", "tile": 1024})), OVER_MEMORY,
        "x4plus at tile 1024 on a 1024² photo: extrapolates to ~50 GB (the same at tile 1024 with animevideov3 peaked at "
        "4.0 GB: within the default budget, so it runs)",
    )


@functools.cache
def _budget_built() -> tuple[BudgetCase, ...]:
    return tuple(_budget_cases())


def budget_cases() -> list[BudgetCase]:
    """The over-budget uploads, built once per process."""
    return list(_budget_built())


BUDGET_CASES = budget_cases()
