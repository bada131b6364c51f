"""Judging an upload before it is queued: cheap checks in the web process first, a full decode last.

Each step costs more than the one before, so each runs only when the cheaper ones have passed:

1. (in `create_job`) the byte limit while the body streams, the workflow, the model name, the user's job limit;
2. here, in a thread of the web process: the magic number and the header of the file's first MB, within the
   header budgets of `imaging/probe.py` (segments, chunks, stray bytes) and the pixel limit; a bomb stops here,
   in milliseconds, without a decoder; then the caller's `judge` of the declared size (the job's cost against its
   budget, `engine/cost.py`);
3. a full decode in the checker pool (`server/checkers.py`), under a time limit, with fair turns per user
   (`server/fairslots.py`): one user's files never occupy more than their share of the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from oldphoto.imaging import HeaderEndsEarly, check_declared, probe
from oldphoto.imaging.probe import ImageInfo
from oldphoto.server.checkers import CheckerPool
from oldphoto.server.fairslots import FairSlots

# What the web process reads to judge a header: enough for every real header but a JPEG's largest metadata; a
# header that ends past it is judged in a checker, which reads the whole file.
HEAD_BYTES = 1 << 20


# Judges a photo's size (width, height) before it is decoded: raises to refuse it.
SizeJudge = Callable[[int, int], None]


def check_head(path: Path, max_pixels: int) -> ImageInfo | None:
    """Format, header budgets and declared size from the file's first bytes; raises the imaging errors.

    The header's information, or None when the header goes on past what the web process reads (a checker judges it).
    """
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        whole = not handle.read(1)
    try:
        info = probe(head)
    except HeaderEndsEarly:
        if whole:
            raise
        return None  # the header goes on past what was read: the checker reads it all, with the same budgets
    check_declared(info, max_pixels)
    return info


def _head_judged(path: Path, max_pixels: int, judge: SizeJudge | None) -> bool:
    """The header's checks, then `judge` on its size (stored size: EXIF rotation keeps the pixels, tiles and rows);
    whether it was judged."""
    info = check_head(path, max_pixels)
    if info is None or judge is None:
        return False
    judge(info.width, info.height)
    return True


class Inspector:
    """`processes` checkers, each decode limited to `timeout_s`; one user holds at most half of them (at least one)."""

    def __init__(self, processes: int = 2, timeout_s: float = 10.0) -> None:
        self.pool = CheckerPool(processes, timeout_s)
        self.slots = FairSlots(processes, max(1, processes // 2))

    def start(self) -> None:
        self.pool.start()

    async def size(self, path: Path, max_pixels: int, user: str, judge: SizeJudge | None = None) -> tuple[int, int]:
        """The photo's upright size, after a full decode within the limits; raises the imaging errors.

        `judge(width, height)` runs on the header's size before the decode, or, when the header lies past the first
        MB, on the decoded size; what it raises refuses the upload.
        """
        judged = await asyncio.to_thread(_head_judged, path, max_pixels, judge)
        async with self.slots.hold(user):
            width, height = await self.pool.decode_size(path, max_pixels)
        if judge is not None and not judged:
            await asyncio.to_thread(judge, width, height)
        return width, height

    def close(self) -> None:
        self.pool.close()
