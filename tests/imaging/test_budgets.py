"""Header budgets (issue 11, item 3): a header that would make Pillow take millions of steps in Python is refused by
the probe, on counts alone, in microseconds; each budget admits its limit and refuses one more."""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import pytest
from PIL import Image

from oldphoto.errors import InvalidImage, TooManyPixels
from oldphoto.imaging import decode_image, probe
from oldphoto.imaging.probe import (
    MAX_GIF_BLOCKS,
    MAX_JPEG_METADATA_BYTES,
    MAX_JPEG_SEGMENTS,
    MAX_JPEG_STRAY_BYTES,
    MAX_PNG_CHUNKS,
    MAX_PNG_IDAT_CHUNKS,
    MAX_TIFF_ENTRIES,
)
from oldphoto.server.inspect import HEAD_BYTES, check_head
from tests.helpers import hostile
from tests.helpers.hostile import MAX_PIXELS, jpeg_segment_bomb

BOMB_SECONDS = 0.1  # issue 11: the 24 MB segment bomb is refused in under 100 ms


def _jpeg(width: int = 8, height: int = 8) -> bytes:
    return hostile._encode(Image.new("RGB", (width, height), (90, 60, 30)), "JPEG", quality=90)


def _with_segments(count: int, payload: bytes = b"") -> bytes:
    """The picture with `count` APP1 segments of `payload` after SOI (the picture's own segments come on top)."""
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return b"\xff\xd8" + segment * count + _jpeg()[2:]


def _own_segments() -> int:
    """Segments the 8x8 picture has before its scan (APP0, DQT, SOF, DHT...)."""
    data, pos, count = _jpeg(), 2, 0
    while data[pos + 1] != 0xDA:
        count += 1
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return count


def test_the_24_mb_segment_bomb_is_refused_by_the_probe_in_under_100_ms(tmp_path: Path) -> None:
    bomb = jpeg_segment_bomb()
    assert 23_000_000 < len(bomb) < 25 * 2**20  # within the default upload limit
    started = time.perf_counter()
    with pytest.raises(InvalidImage, match="segments"):
        probe(bomb)  # what a checker does with the whole file
    whole = time.perf_counter() - started
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bomb)
    started = time.perf_counter()
    with pytest.raises(InvalidImage, match="segments"):
        check_head(path, MAX_PIXELS)  # what the web process does, on the first MB
    head = time.perf_counter() - started
    print(f"\nsegment bomb ({len(bomb) / 1e6:.0f} MB): probe of the whole file {whole * 1000:.2f} ms, web-side check {head * 1000:.2f} ms")
    assert whole < BOMB_SECONDS and head < BOMB_SECONDS


def test_the_jpeg_segment_budget_admits_the_limit_and_refuses_one_more() -> None:
    room = MAX_JPEG_SEGMENTS - _own_segments()
    assert decode_image(_with_segments(room), max_pixels=MAX_PIXELS).width == 8
    with pytest.raises(InvalidImage, match="segments"):
        probe(_with_segments(room + 1))


def test_the_jpeg_metadata_budget_admits_the_limit_and_refuses_one_more() -> None:
    piece = 65533 - 2  # the largest segment payload
    budget = MAX_JPEG_METADATA_BYTES
    app0 = 14  # the picture's own JFIF segment: 16 bytes long, 14 of them payload
    full, rest = divmod(budget - app0, piece)
    at_limit = b"\xff\xd8" + (b"\xff\xe1\xff\xfd" + bytes(piece)) * full + b"\xff\xe1" + struct.pack(">H", rest + 2) + bytes(rest) + _jpeg()[2:]
    assert probe(at_limit).width == 8
    one_more = at_limit.replace(b"\xff\xe1" + struct.pack(">H", rest + 2), b"\xff\xe1" + struct.pack(">H", rest + 3) + b"\x00", 1)
    with pytest.raises(InvalidImage, match="metadata"):
        probe(one_more)


@pytest.mark.parametrize("filler", [b"\x00", b"\xff"], ids=["junk", "fill_bytes"])
def test_stray_bytes_between_jpeg_segments_have_a_budget(filler: bytes) -> None:
    budget = MAX_JPEG_STRAY_BYTES
    com = b"\xff\xfe\x00\x02"
    # After a run of fill bytes the marker's own 0xFF is not stray; after junk, every byte is.
    at_limit = b"\xff\xd8" + com + filler * budget + _jpeg()[2:]
    assert probe(at_limit).width == 8
    with pytest.raises(InvalidImage, match="stray"):
        probe(b"\xff\xd8" + com + filler * (budget + 1) + _jpeg()[2:])


def test_a_jpeg_cut_after_its_frame_header_keeps_its_size_for_the_decoder_to_judge() -> None:
    data = _jpeg(33, 17)
    sos = data.find(b"\xff\xda")
    info = probe(data[:sos])
    assert (info.width, info.height) == (33, 17)


def test_png_chunk_budgets() -> None:
    png = hostile._encode(Image.new("RGB", (8, 8)), "PNG")
    own = 1  # IHDR
    idat = png.find(b"IDAT") - 4
    before = png[:33] + hostile._png_chunk(b"abCd", b"") * (MAX_PNG_CHUNKS - own) + png[33:]
    assert decode_image(before, max_pixels=MAX_PIXELS).width == 8
    with pytest.raises(InvalidImage, match="chunks before"):
        probe(before[:33] + hostile._png_chunk(b"abCd", b"") + before[33:])
    idats = png[:idat] + hostile._png_chunk(b"IDAT", b"") * (MAX_PNG_IDAT_CHUNKS - 1) + png[idat:]
    assert decode_image(idats, max_pixels=MAX_PIXELS).width == 8
    with pytest.raises(InvalidImage, match="pixel data"):
        probe(idats[:idat] + hostile._png_chunk(b"IDAT", b"") + idats[idat:])


def test_gif_and_tiff_budgets() -> None:
    gif = hostile._gif((8, 8), (0, 0, 8, 8))
    blocks = MAX_GIF_BLOCKS
    # The extension counts as one block, and each of its sub-blocks as one more.
    assert probe(gif[:19] + b"!\xfe" + b"\x01x" * (blocks - 1) + b"\x00" + gif[19:]).width == 8
    with pytest.raises(InvalidImage, match="blocks"):
        probe(gif[:19] + b"!\xfe" + b"\x01x" * blocks + b"\x00" + gif[19:])
    own = 9  # the tags of hostile._tiff
    tags = MAX_TIFF_ENTRIES - own
    assert probe(hostile._tiff(4, 4, bytes(16), extra=tuple((50_000 + i, 1, 0) for i in range(tags)))).width == 4
    with pytest.raises(InvalidImage, match="tags"):
        probe(hostile._tiff(4, 4, bytes(16), extra=tuple((50_000 + i, 1, 0) for i in range(tags + 1))))


def test_real_photos_are_within_every_budget(photos: list[Path]) -> None:
    for path in photos:
        probe(path.read_bytes())


# ------------------------------------------------------------------------------------ the web-side check


def test_the_web_side_check_refuses_bombs_and_leaves_long_headers_to_a_checker(tmp_path: Path) -> None:
    path = tmp_path / "upload"
    path.write_bytes(hostile._png(100_000, 100_000, b""))
    with pytest.raises(TooManyPixels):
        check_head(path, MAX_PIXELS)
    # An honest photo whose metadata runs past the first MB: the web process cannot see its frame header, so a
    # checker (which reads it all) judges it; nothing is refused for that alone.
    long_header = _with_segments(40, bytes(65533 - 2))
    assert len(long_header) > HEAD_BYTES
    path.write_bytes(long_header)
    check_head(path, MAX_PIXELS)
    assert decode_image(long_header, max_pixels=MAX_PIXELS).width == 8
    # A whole file whose header ends early is damaged, wherever it is judged.
    path.write_bytes(_jpeg()[:20])
    with pytest.raises(InvalidImage):
        check_head(path, MAX_PIXELS)


def test_a_file_at_the_pixel_limit_passes_the_web_side_check(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (50, 40)).save(out, "PNG")
    path = tmp_path / "upload"
    path.write_bytes(out.getvalue())
    check_head(path, 2000)
    with pytest.raises(TooManyPixels):
        check_head(path, 1999)
