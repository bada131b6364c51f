"""Decoding untrusted uploads: the hostile corpus, format sniffing, header probing, limits, modes, orientation."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps, TiffImagePlugin

from oldphoto.errors import BadInput, InvalidImage, OldphotoError, TooLarge, TooManyPixels, UnsupportedFormat
from oldphoto.imaging import (
    MAX_JPEG_SCANS,
    SNIFF_BYTES,
    SUPPORTED,
    DecodedImage,
    decode_file,
    decode_image,
    probe,
    sniff_format,
)
from tests.helpers import hostile
from tests.helpers.hostile import MAX_PIXELS, OK, UPRIGHT_QUADRANTS, UPRIGHT_SIZE, Case, hostile_corpus

ROOT = Path(__file__).resolve().parents[2]
CORPUS = hostile_corpus()
BY_NAME = {case.name: case for case in CORPUS}
ERROR_CODES = {"too_many_pixels", "invalid_image", "unsupported_format"}

# Pillow rightly warns about the deliberately broken EXIF and TIFF metadata in the corpus; that is expected here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Corrupt EXIF data"),
    pytest.mark.filterwarnings("ignore:Possibly corrupt EXIF"),
    pytest.mark.filterwarnings("ignore:Truncated File Read"),
    pytest.mark.filterwarnings("ignore:Tag data larger than file"),
]


def decode(case: Case | bytes) -> DecodedImage:
    return decode_image(case.data if isinstance(case, Case) else case, max_pixels=MAX_PIXELS)


def assert_well_formed(image: DecodedImage) -> None:
    assert image.rgb.dtype == np.uint8 and image.rgb.shape == (image.height, image.width, 3)
    assert image.rgb.flags.c_contiguous and image.rgb.flags.writeable
    if image.alpha is not None:
        assert image.alpha.dtype == np.uint8 and image.alpha.shape == (image.height, image.width)
        assert image.alpha.flags.c_contiguous


# ------------------------------------------------------------------------------------------ the corpus


def test_corpus_is_large_varied_and_well_labelled() -> None:
    assert len(CORPUS) >= 40
    assert {case.expect for case in CORPUS} == {OK} | ERROR_CODES
    for case in CORPUS:
        assert case.filename and "/" in case.content_type and case.note, case.name
    # Every accepted format has at least one bomb and one truncated file.
    for fmt, ext in {"png": "png", "jpeg": "jpg", "gif": "gif", "webp": "webp", "tiff": "tif", "bmp": "bmp"}.items():
        bombs = [c for c in CORPUS if c.expect == "too_many_pixels" and c.filename.endswith(ext)]
        cut = [c for c in CORPUS if c.name.startswith("truncated_") and c.filename.endswith(ext)]
        assert bombs and cut, fmt
    # Bombs are tiny files: the danger is in what they declare, not in what they weigh.
    assert max(len(c.data) for c in CORPUS if c.expect == "too_many_pixels") < 64 * 1024


def test_corpus_is_built_once_and_handed_out_as_a_fresh_list() -> None:
    first, second = hostile_corpus(), hostile_corpus()
    assert first == second and first is not second


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
def test_corpus_case_has_its_expected_outcome(case: Case) -> None:
    # Any exception other than the project's errors escapes this try and fails the test.
    try:
        image = decode(case)
    except OldphotoError as exc:
        assert exc.code == case.expect, f"{case.name}: {exc.code} ({exc.message}); {case.note}"
        assert exc.code in ERROR_CODES and exc.http_status in (413, 415, 422)
        assert exc.message.endswith(".") and len(exc.message) > 20
        return
    assert case.expect == OK, f"{case.name} decoded, expected {case.expect}: {case.note}"
    assert_well_formed(image)
    if case.size is not None:
        assert (image.width, image.height) == case.size
    if case.alpha is not None:
        assert (image.alpha is not None) == case.alpha


def test_bombs_are_refused_before_any_decoder_sees_them(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pillow(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bomb reached Pillow")

    monkeypatch.setattr(Image, "open", no_pillow)
    for case in CORPUS:
        if case.expect == "too_many_pixels" or case.name in ("jpeg_scan_bomb", "tiff_tile_bomb"):
            with pytest.raises((TooManyPixels, InvalidImage)) as caught:
                decode(case)
            assert caught.value.code == case.expect


_MEMORY_PROBE = """
import json, resource
from PIL import Image
from tests.helpers.hostile import hostile_corpus
from oldphoto.imaging import decode_image
from oldphoto.errors import OldphotoError

cases = [c for c in hostile_corpus() if c.expect != "ok"]
Image.init()  # import every Pillow plugin now, so that imports do not count as decoding
# A bomb that slipped through would ask for gigabytes: cap the address space so it fails fast instead.
with open("/proc/self/statm") as f:
    size = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + (768 << 20), resource.RLIM_INFINITY))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcomes = {}
for case in cases:
    try:
        decode_image(case.data, max_pixels=40_000_000)
        outcomes[case.name] = "ok"
    except OldphotoError as exc:
        outcomes[case.name] = exc.code
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_kib": after - before, "outcomes": outcomes}))
"""


def run_isolated(script: str, *args: str) -> dict:
    """Run `script` in a fresh interpreter, where the peak resident size (a high-water mark) means something."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_hostile_inputs_keep_memory_bounded() -> None:
    """Decoding every refused case (bombs declaring up to a terapixel) grows the process by a few MB at most."""
    result = run_isolated(_MEMORY_PROBE)
    expected = {c.name: c.expect for c in CORPUS if c.expect != OK}
    assert result["outcomes"] == expected
    assert result["grew_kib"] < 16 * 1024, f"resident size grew {result['grew_kib']} KiB"


_PEAK_PROBE = """
import json, resource, struct, sys, zlib
from tests.helpers.hostile import _png, _png_chunk, _deflate_zeros, _exif_with_orientation
from oldphoto.imaging import decode_image

width, height = 4000, 3000
exif = _png_chunk(b"eXIf", _exif_with_orientation(int(sys.argv[1]))[6:])
data = _png(width, height, _deflate_zeros((1 + 3 * width) * height), colour=2, extra=exif)
decode_image(_png(2, 2, zlib.compress(bytes(14)), colour=2), max_pixels=4)  # import the plugins first
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = decode_image(data, max_pixels=40_000_000)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_kib": after - before, "size": [image.width, image.height]}))
"""


@pytest.mark.parametrize("orientation", [1, 6])
def test_decoding_holds_one_decoded_copy_besides_the_result(orientation: int) -> None:
    """12 MP RGB: Pillow's copy (4 bytes a pixel) plus the result (3) plus band buffers, never a second copy."""
    result = run_isolated(_PEAK_PROBE, str(orientation))
    pixels = 4000 * 3000
    assert result["size"] == ([4000, 3000] if orientation == 1 else [3000, 4000])
    budget_kib = (4 * pixels + 3 * pixels) // 1024 + 24 * 1024
    # A naive np.array(im.convert("RGB")) holds Pillow's copy, its converted copy, a bytes copy and the array.
    assert result["grew_kib"] < budget_kib, f"peak grew {result['grew_kib']} KiB, budget {budget_kib} KiB"


# --------------------------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"II+\x00", "tiff"),
        (b"BM" + bytes(12) + struct.pack("<I", 124), "bmp"),
    ],
)
def test_sniff_knows_each_format_by_its_magic_number(head: bytes, fmt: str) -> None:
    assert sniff_format(head) == fmt


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("empty", "empty"),
        ("pdf", "PDF"),
        ("svg_script", "SVG"),
        ("html_script", "HTML"),
        ("zip", "ZIP"),
        ("text", "text"),
        ("heic", "HEIC"),
        ("xml_xxe", "XML"),
    ],
)
def test_sniff_names_what_it_refuses(name: str, words: str) -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        sniff_format(BY_NAME[name].data)
    assert words in caught.value.message and "JPEG, PNG" in caught.value.message


def test_sniff_needs_only_the_first_bytes() -> None:
    for case in CORPUS:
        try:
            whole = sniff_format(case.data)
        except UnsupportedFormat:
            with pytest.raises(UnsupportedFormat):
                sniff_format(case.data[:SNIFF_BYTES])
            continue
        assert sniff_format(case.data[:SNIFF_BYTES]) == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_sniff_answers_a_format_or_unsupported_for_any_bytes(head: bytes) -> None:
    try:
        assert sniff_format(head) in SUPPORTED
    except UnsupportedFormat as exc:
        assert exc.message


# ---------------------------------------------------------------------------------------------- probing


@pytest.mark.parametrize("case", [c for c in CORPUS if c.expect == OK], ids=lambda case: case.name)
def test_probe_agrees_with_pillow_on_every_valid_case(case: Case) -> None:
    info = probe(case.data)
    with Image.open(io.BytesIO(case.data)) as im:
        # Pillow reports a TIFF's size already turned by its Orientation tag; probe reports it as stored.
        tiff = isinstance(im, TiffImagePlugin.TiffImageFile)
        stored = (im.tag_v2[256], im.tag_v2[257]) if tiff else im.size
    assert (info.width, info.height) == stored


def test_probe_reads_the_size_of_a_file_cut_right_after_its_header() -> None:
    png = hostile._encode(Image.new("RGB", (321, 123)), "PNG")
    info = probe(png[:33])  # signature + IHDR only
    assert (info.format, info.width, info.height) == ("png", 321, 123)


def _big_endian_tiff(width: int, height: int) -> bytes:
    entries = struct.pack(">HHII", 256, 3, 1, width << 16) + struct.pack(">HHII", 257, 4, 1, height)
    return b"MM\x00*" + struct.pack(">IH", 8, 2) + entries + bytes(4)


def _os2_bmp(width: int, height: int) -> bytes:
    return b"BM" + struct.pack("<IHHI", 26, 0, 0, 26) + struct.pack("<IHHHH", 12, width, height, 1, 24)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (_big_endian_tiff(700, 90_000), (700, 90_000)),
        (_os2_bmp(640, 480), (640, 480)),
        (hostile._bigtiff_header(5, 7), (5, 7)),
        (hostile._gif((10, 10), (30, 40, 5, 5)), (35, 45)),
    ],
    ids=["big_endian_tiff", "os2_bmp", "bigtiff", "gif_frame_outside_screen"],
)
def test_probe_reads_the_less_common_headers(data: bytes, size: tuple[int, int]) -> None:
    info = probe(data)
    assert (info.width, info.height) == size


@pytest.mark.parametrize(
    "data",
    [b"II+\x00\x08\x00\x00\x00" + struct.pack("<Q", 2**63 + 5), b"MM\x00+\x00\x08\x00\x00" + b"\xff" * 8],
    ids=["little_endian", "big_endian"],
)
def test_probe_refuses_a_bigtiff_offset_beyond_any_file(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        probe(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["jpeg", "png", "gif", "webp", "tiff", "bmp"]), st.binary(max_size=200))
def test_probe_never_raises_anything_but_project_errors(fmt: str, tail: bytes) -> None:
    magic = {
        "jpeg": b"\xff\xd8\xff",
        "png": b"\x89PNG\r\n\x1a\n",
        "gif": b"GIF89a",
        "webp": b"RIFF\x00\x00\x00\x00WEBP",
        "tiff": b"II*\x00",
        "bmp": b"BM" + bytes(12) + b"\x28\x00\x00\x00",
    }[fmt]
    try:
        info = probe(magic + tail)
    except (InvalidImage, UnsupportedFormat):
        return
    assert info.width > 0 and info.height > 0


# ----------------------------------------------------------------------------------------------- limits


def test_the_pixel_limit_is_inclusive() -> None:
    png = hostile._encode(Image.new("RGB", (50, 40)), "PNG")
    assert decode_image(png, max_pixels=2000).width == 50
    with pytest.raises(TooManyPixels) as caught:
        decode_image(png, max_pixels=1999)
    assert "50x40" in caught.value.message


def test_pillows_own_bomb_guard_is_reported_as_too_many_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a generous operator limit, Pillow's process-wide guard is the one that trips.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(TooManyPixels):
        decode_image(hostile._encode(Image.new("RGB", (30, 30)), "PNG"), max_pixels=10**9)


def test_a_truncated_file_fails_even_when_another_library_allowed_truncation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for case in CORPUS:
        if case.name.startswith("truncated_"):
            with pytest.raises(InvalidImage):
                decode(case)


def _progressive_with_scans(total: int) -> bytes:
    progressive = hostile._encode(hostile._noise(64, 64), "JPEG", progressive=True)
    return hostile._jpeg_scan_bomb(progressive, total - progressive.count(b"\xff\xda"))


def test_the_jpeg_scan_limit_admits_the_limit_and_refuses_one_more() -> None:
    assert decode(_progressive_with_scans(MAX_JPEG_SCANS)).width == 64
    with pytest.raises(InvalidImage, match="scans"):
        decode(_progressive_with_scans(MAX_JPEG_SCANS + 1))


def test_max_pixels_must_be_positive() -> None:
    with pytest.raises(ValueError):
        decode_image(BY_NAME["png_1x1"].data, max_pixels=0)


# --------------------------------------------------------------------------------------- modes and colour


def rows(case_name: str) -> tuple[list, list | None]:
    image = decode(BY_NAME[case_name])
    return image.rgb[0].tolist(), None if image.alpha is None else image.alpha[0].tolist()


def test_cmyk_is_converted_including_adobes_inverted_jpeg_form() -> None:
    assert np.abs(np.array(rows("cmyk_jpeg")[0]) - (0, 255, 255)).max() <= 2
    assert rows("cmyk_tiff")[0][0] == [255, 0, 255]


@pytest.mark.parametrize("name", ["png_16bit_gray", "tiff_16bit_gray"])
def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(name: str) -> None:
    rgb, alpha = rows(name)
    assert rgb == [[v, v, v] for v in (0, 1, 128, 255)] and alpha is None


def test_16_bit_rgb_keeps_its_range() -> None:
    assert rows("png_16bit_rgb")[0][0] == [0, 128, 255]


def test_float_tiff_in_unit_range_is_scaled() -> None:
    assert [px[0] for px in rows("tiff_float")[0]] == [0, 64, 128, 255]


def test_palette_transparency_becomes_an_alpha_plane() -> None:
    rgb, alpha = rows("png_palette_transparent")
    assert alpha == [0] * 4 + [255] * 4 and rgb[4:] == [[255, 0, 0]] * 4


@pytest.mark.parametrize(("name", "colour", "alpha"), [("png_la", 77, 128), ("png_rgba", (10, 20, 30), 40)])
def test_alpha_is_kept_separately_and_exactly(name: str, colour: int | tuple[int, int, int], alpha: int) -> None:
    rgb, plane = rows(name)
    expected = [colour] * 3 if isinstance(colour, int) else list(colour)
    assert rgb[0] == expected and plane == [alpha] * 8


@pytest.mark.parametrize(
    ("name", "colour"), [("tiff_gray_premultiplied", [49, 49, 49]), ("tiff_rgb_premultiplied", [49, 99, 199])]
)
def test_premultiplied_alpha_is_undone(name: str, colour: list[int]) -> None:
    rgb, alpha = rows(name)
    assert rgb[0] == colour and alpha == [128] * 4


@pytest.mark.parametrize("name", ["png_1bit", "tiff_1bit"])
def test_one_bit_images_become_black_and_white(name: str) -> None:
    assert rows(name)[0] == [[0, 0, 0]] * 4 + [[255, 255, 255]] * 4


@pytest.mark.parametrize("name", ["gif_animated", "apng", "webp_animated", "tiff_multipage"])
def test_only_the_first_frame_or_page_is_decoded(name: str) -> None:
    image = decode(BY_NAME[name])
    assert (image.width, image.height) == (10, 6) and image.rgb[0, 0].tolist() == [255, 0, 0]


def test_the_source_mode_is_reported() -> None:
    assert decode(BY_NAME["png_gray"]).source_mode == "L"
    assert decode(BY_NAME["png_16bit_gray"]).source_mode == "I;16"
    assert decode(BY_NAME["png_rgba"]).source_mode == "RGBA"


def test_band_conversion_matches_pillows_whole_image_conversion() -> None:
    # Big enough for several bands, with a palette and transparency to exercise the RGBA path.
    indices = np.random.default_rng(3).integers(0, 200, (900, 2100), np.uint8)
    picture = Image.fromarray(indices, "P")
    picture.putpalette(np.random.default_rng(4).integers(0, 256, 768, np.uint8).tobytes())
    data = hostile._encode(picture, "PNG", transparency=3)
    image = decode(data)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
    assert np.array_equal(image.rgb, expected[..., :3]) and np.array_equal(image.alpha, expected[..., 3])


def test_threads_decode_in_parallel_without_sharing_state() -> None:
    cases = [BY_NAME[n] for n in ("jpeg_orientation_6", "png_16bit_gray", "png_palette_transparent", "cmyk_jpeg")]
    expected = [decode(c).rgb for c in cases]
    failures: list[str] = []

    def work(index: int) -> None:
        for _ in range(20):
            if not np.array_equal(decode(cases[index]).rgb, expected[index]):
                failures.append(cases[index].name)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


# ------------------------------------------------------------------------------------------- orientation

ORIENTED = [c.name for c in CORPUS if "orientation" in c.name or c.name == "jpeg_broken_exif"]


@pytest.mark.parametrize("name", ORIENTED)
def test_exif_orientation_turns_the_picture_upright(name: str) -> None:
    image = decode(BY_NAME[name])
    width, height = UPRIGHT_SIZE
    assert (image.width, image.height) == (width, height)
    for (row, col), colour in UPRIGHT_QUADRANTS.items():
        centre = image.rgb[row * height // 2 + height // 4, col * width // 2 + width // 4]
        assert np.abs(centre.astype(int) - colour).max() <= 24, (name, row, col, centre)


@pytest.mark.parametrize("name", [f"jpeg_orientation_{v}" for v in range(1, 9)])
def test_orientation_matches_pillows_exif_transpose_exactly(name: str) -> None:
    with Image.open(io.BytesIO(BY_NAME[name].data)) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert np.array_equal(decode(BY_NAME[name]).rgb, expected)


def test_orientation_turns_the_alpha_plane_too() -> None:
    stored = hostile.stored_picture(8).convert("RGBA")
    stored.putalpha(Image.fromarray(np.asarray(stored)[..., 0]))  # alpha = red channel: the red quadrant
    data = hostile._encode(stored, "PNG", exif=hostile._exif_with_orientation(8))
    image = decode(data)
    assert image.alpha is not None and np.array_equal(image.alpha, image.rgb[..., 0])


# ------------------------------------------------------------------------------------------------ fuzzing

_SEEDS = [c for c in CORPUS if c.expect == OK and len(c.data) < 20_000]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6),
    st.floats(0.05, 1.0),
)
def test_mutated_images_fail_only_with_project_errors(seed: Case, flips: list, keep: float) -> None:
    data = bytearray(seed.data[: max(1, int(len(seed.data) * keep))])
    for where, value in flips:
        data[int(where * len(data))] = value
    try:
        image = decode(bytes(data))
    except (InvalidImage, UnsupportedFormat, TooManyPixels):
        return
    assert_well_formed(image)


# ------------------------------------------------------------------------------------------ files, photos


def test_decode_file_reads_like_decode_image(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"  # a PNG under a JPEG name: the bytes decide
    path.write_bytes(BY_NAME["png_palette_transparent"].data)
    from_file, from_bytes = decode_file(path, max_pixels=MAX_PIXELS), decode(BY_NAME["png_palette_transparent"])
    assert from_file.format == "png" and np.array_equal(from_file.alpha, from_bytes.alpha)


def test_decode_file_applies_the_same_limits(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(BY_NAME["png_ihdr_bomb"].data)
    with pytest.raises(TooManyPixels):
        decode_file(str(path), max_pixels=MAX_PIXELS)


def test_decode_file_refuses_files_over_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(BY_NAME["png_1x1"].data)
    assert decode_file(path, max_pixels=MAX_PIXELS, max_bytes=len(BY_NAME["png_1x1"].data)).width == 1
    with pytest.raises(TooLarge):
        decode_file(path, max_pixels=MAX_PIXELS, max_bytes=len(BY_NAME["png_1x1"].data) - 1)


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "device"])
def test_decode_file_refuses_what_is_not_a_readable_regular_file(tmp_path: Path, kind: str) -> None:
    paths = {"missing": tmp_path / "nope.png", "directory": tmp_path, "fifo": tmp_path / "pipe.png"}
    path = paths.get(kind, Path("/dev/zero"))  # a device: reading it would never end
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)  # nobody writes to it: opening it naively would block forever
    if kind == "device" and not path.exists():
        pytest.skip("no /dev/zero here")
    with pytest.raises(BadInput):
        decode_file(path, max_pixels=MAX_PIXELS)


def test_real_photos_decode_at_their_header_size_and_match_pillow(photos: list[Path]) -> None:
    for path in photos:
        data = path.read_bytes()
        info = probe(data)
        image = decode_file(path, max_pixels=MAX_PIXELS)
        with Image.open(path) as im:
            expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        assert (info.width, info.height) == (image.width, image.height), path.name
        assert image.format == "jpeg" and np.array_equal(image.rgb, expected), path.name
