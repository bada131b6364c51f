"""Decoding an upload to judge it, away from the web process.

A full decode is the only honest check of an image, but decoders are where hostile files strike and a large
photo costs hundreds of MB while it is open. So the check runs in one small helper process: one decode at a
time, its memory given back when the process is recycled, and a decoder crash costs only that process.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from oldphoto.errors import InvalidImage

# Recycled often: a decoder's high-water mark stays with the process that reached it.
TASKS_PER_PROCESS = 20


def _size_of(path: str, max_pixels: int) -> tuple[int, int]:
    from oldphoto.imaging import decode_file

    image = decode_file(path, max_pixels=max_pixels)
    return image.width, image.height


class Inspector:
    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = asyncio.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"), max_tasks_per_child=TASKS_PER_PROCESS)
        return self._pool

    async def size(self, path: Path, max_pixels: int) -> tuple[int, int]:
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._executor(), _size_of, str(path), max_pixels)
            except BrokenProcessPool:
                self._pool = None
                raise InvalidImage("The image could not be read (its decoder crashed).") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


INSPECTOR = Inspector()


async def inspect_image(path: Path, max_pixels: int) -> tuple[int, int]:
    """The photo's upright size, after a full decode within the limits; raises the imaging errors."""
    return await INSPECTOR.size(path, max_pixels)
