"""The checker pool on its own (server/checkers.py), with real processes: answers and errors cross the process
boundary intact, processes are recycled and replaced without the pool shrinking, and `close` leaves none behind."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from oldphoto.errors import InvalidImage, TooManyPixels
from oldphoto.server.checkers import CheckerPool, DecodeTimeout
from tests.helpers.hostile import slow_progressive_jpeg, time_limit_for


def _png(path: Path, width: int, height: int) -> Path:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, "PNG")
    path.write_bytes(out.getvalue())
    return path


async def _settled(pool: CheckerPool, timeout: float = 30) -> list[int]:
    """The pool's pids once successors have joined and the processes they replace have left."""
    deadline = time.monotonic() + timeout
    while (len(pool.pids()) != pool.size or pool._starting) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return pool.pids()


def _gone(pids: list[int], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
            return True
        time.sleep(0.05)
    return False


def test_answers_and_errors_cross_the_process_boundary(tmp_path: Path) -> None:
    async def scenario() -> None:
        pool = CheckerPool(size=1, timeout_s=30)
        try:
            assert await pool.decode_size(_png(tmp_path / "a.png", 30, 20), 10_000) == (30, 20)
            with pytest.raises(TooManyPixels) as refused:
                await pool.decode_size(_png(tmp_path / "b.png", 200, 200), 10_000)
            assert refused.value.code == "too_many_pixels" and "200x200" in refused.value.message
            (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
            with pytest.raises(InvalidImage) as damaged:
                await pool.decode_size(tmp_path / "c.png", 10_000)
            assert damaged.value.code == "invalid_image"
        finally:
            pool.close()

    asyncio.run(scenario())


def test_processes_are_recycled_and_replaced_and_close_leaves_none(tmp_path: Path) -> None:
    async def scenario() -> None:
        pool = CheckerPool(size=2, timeout_s=30, tasks_per_process=3)
        photo = _png(tmp_path / "a.png", 16, 16)
        seen: set[int] = set()
        try:
            pool.start()
            first = await _settled(pool)
            for _ in range(12):
                assert await pool.decode_size(photo, 10_000) == (16, 16)
                seen.update(pool.pids())
            now = await _settled(pool)
            assert len(now) == 2 and len(seen) >= 4 and not set(first) & set(now)  # recycled, never more than needed
            os.kill(now[0], signal.SIGKILL)  # the OOM killer, say, while it waits for work
            while psutil.Process(now[0]).status() != psutil.STATUS_ZOMBIE:  # dead, not yet reaped by the pool
                await asyncio.sleep(0.01)
            for _ in range(3):
                assert await pool.decode_size(photo, 10_000) == (16, 16)
            survivors = await _settled(pool)
            assert len(survivors) == 2 and now[0] not in survivors
        finally:
            every = pool.pids()
            pool.close()
        assert _gone(every + list(seen))

    asyncio.run(scenario())


def test_a_killed_or_slow_decode_is_refused_and_its_process_replaced(tmp_path: Path) -> None:
    slow = tmp_path / "slow.jpg"
    slow.write_bytes(slow_progressive_jpeg(4500))  # 0.9 s of decoding here, on a fast core; 2-3 s on slower ones
    limit = time_limit_for(slow.read_bytes(), 0.5)
    photo = _png(tmp_path / "a.png", 16, 16)

    async def scenario() -> None:
        pool = CheckerPool(size=1, timeout_s=limit)
        try:
            pool.start()
            await _settled(pool)
            started = time.monotonic()
            with pytest.raises(DecodeTimeout) as late:
                await pool.decode_size(slow, 40_000_000)
            assert late.value.code == "decode_timeout" and late.value.http_status == 422
            assert time.monotonic() - started < limit + 10  # the limit, plus the start of its successor
            assert await pool.decode_size(photo, 10_000) == (16, 16)

            pool.timeout_s = 30
            decoding = asyncio.create_task(pool.decode_size(slow, 40_000_000))
            await asyncio.sleep(0.3)
            os.kill(pool.pids()[0], signal.SIGKILL)  # a decoder crash
            with pytest.raises(InvalidImage, match="crashed"):
                await decoding
            assert await pool.decode_size(photo, 10_000) == (16, 16)
        finally:
            pool.close()

    asyncio.run(scenario())
