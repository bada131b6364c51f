"""Judging an upload before it is queued: cheap checks in the web process first, a full decode last.

Each step costs more than the one before, so each runs only when the cheaper ones have passed:

1. (in `create_job`) the byte limit while the body streams, the workflow, the model name, the user's job limit;
2. here, in a thread of the web process: the magic number and the header of the file's first MB, within the
   header budgets of `imaging/probe.py` (segments, chunks, stray bytes) and the pixel limit; a bomb stops here,
   in milliseconds, without a decoder;
3. a full decode in the checker pool (`server/checkers.py`), under a time limit, with fair turns per user
   (`server/fairslots.py`): one user's files never occupy more than their share of the pool.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from oldphoto.imaging import HeaderEndsEarly, check_declared, probe
from oldphoto.server.checkers import CheckerPool
from oldphoto.server.fairslots import FairSlots

# What the web process reads to judge a header: enough for every real header but a JPEG's largest metadata; a
# header that ends past it is judged in a checker, which reads the whole file.
HEAD_BYTES = 1 << 20


def check_head(path: Path, max_pixels: int) -> None:
    """Format, header budgets and declared size from the file's first bytes; raises the imaging errors."""
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        whole = not handle.read(1)
    try:
        info = probe(head)
    except HeaderEndsEarly:
        if whole:
            raise
        return  # the header goes on past what was read: the checker reads it all, with the same budgets
    check_declared(info, max_pixels)


class Inspector:
    """`processes` checkers, each decode limited to `timeout_s`; one user holds at most half of them (at least one)."""

    def __init__(self, processes: int = 2, timeout_s: float = 10.0) -> None:
        self.pool = CheckerPool(processes, timeout_s)
        self.slots = FairSlots(processes, max(1, processes // 2))

    def start(self) -> None:
        self.pool.start()

    async def size(self, path: Path, max_pixels: int, user: str) -> tuple[int, int]:
        """The photo's upright size, after a full decode within the limits; raises the imaging errors."""
        await asyncio.to_thread(check_head, path, max_pixels)
        async with self.slots.hold(user):
            return await self.pool.decode_size(path, max_pixels)

    def close(self) -> None:
        self.pool.close()
