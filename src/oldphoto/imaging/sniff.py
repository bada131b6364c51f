"""Deciding an upload's format from its first bytes, never from its name or declared content type.

Names and content types are chosen by whoever sends the file; the magic number is what the decoder will
actually act on, so it is the only thing that decides which (single) decoder is allowed to see the bytes.
"""

from __future__ import annotations

import codecs

from oldphoto.errors import UnsupportedFormat

# How many leading bytes `sniff_format` needs to decide; callers reading a stream may pass just these.
SNIFF_BYTES = 32

SUPPORTED = ("jpeg", "png", "webp", "tiff", "bmp", "gif")

_ACCEPTED_LIST = "JPEG, PNG, WebP, TIFF, BMP or GIF"

# Sizes of the BMP info headers that exist (core, v1 to v5 and the OS/2 and Adobe variants): "BM" alone is two
# printable letters, so a text file starting with them must not pass as a bitmap.
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

# Formats people commonly send by mistake, named in the refusal so they know what to do instead.
_KNOWN_OTHERS: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF", 0, "a PDF document"),
    (b"PK\x03\x04", 0, "a ZIP archive (or an office document)"),
    (b"8BPS", 0, "a Photoshop document"),
    (b"\x00\x00\x00\x0cjP  ", 0, "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", 0, "a JPEG 2000 image"),
    (b"ftypheic", 4, "a HEIC photo"),
    (b"ftypheix", 4, "a HEIC photo"),
    (b"ftypmif1", 4, "a HEIF photo"),
    (b"ftypavif", 4, "an AVIF image"),
    (b"\x00\x00\x01\x00", 0, "an icon file"),
    (b"\x1f\x8b", 0, "a gzip archive"),
)


def sniff_format(head: bytes) -> str:
    """The format of an upload from its leading bytes: one of SUPPORTED, else UnsupportedFormat."""
    found = _match_supported(head)
    if found is None:
        raise UnsupportedFormat(_refusal(head))
    return found


def _match_supported(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    # Classic TIFF (42) and BigTIFF (43), in both byte orders.
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "bmp"
    return None


def _refusal(head: bytes) -> str:
    what = _describe_other(head)
    return f"This file is {what}, not a photo we can read. Please upload a {_ACCEPTED_LIST} image."


def _describe_other(head: bytes) -> str:
    if not head:
        return "empty"
    for magic, offset, what in _KNOWN_OTHERS:
        if head[offset : offset + len(magic)] == magic:
            return what
    # Only the start matters for naming, and the caller may have passed the whole upload.
    start = head[:256]
    text = start.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in text or b"doctype svg" in text:
        return "an SVG drawing"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<script")):
        return "an HTML page"
    if text.startswith(b"<?xml"):
        return "an XML document"
    if _looks_like_text(start):
        return "text"
    return "in a format we do not recognise"


def _looks_like_text(start: bytes) -> bool:
    # Incremental decoding tolerates a multi-byte character cut in two at the end of the slice.
    try:
        decoded = codecs.getincrementaldecoder("utf-8")().decode(start, final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in decoded)
