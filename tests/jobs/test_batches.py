"""Calls that wait together: each gets its own answer, in the order asked, and a batch waits for nothing."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from oldphoto.jobs.batches import Batches, BatchRun, Executor


def run_in(pool: ThreadPoolExecutor) -> Executor[int, int]:
    async def execute(run: BatchRun[int, int], items: list[int]) -> list[int | BaseException]:
        return await asyncio.get_running_loop().run_in_executor(pool, run, items)

    return execute


def test_calls_made_while_a_batch_runs_go_together_into_the_next_each_with_its_own_answer() -> None:
    seen: list[list[int]] = []
    release = threading.Event()

    def double_or_refuse(items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        release.wait(5)
        return [ValueError(item) if item % 5 == 0 else item * 2 for item in items]

    async def scenario() -> list[object]:
        with ThreadPoolExecutor(1) as pool:
            batches = Batches(double_or_refuse, run_in(pool), max_items=8)
            first = asyncio.ensure_future(batches(1))
            await asyncio.sleep(0.05)  # the first batch (of one) is running and holds
            rest = [asyncio.ensure_future(batches(i)) for i in range(2, 21)]
            await asyncio.sleep(0.05)
            release.set()
            return await asyncio.gather(first, *rest, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert seen == [[1], list(range(2, 10)), list(range(10, 18)), [18, 19, 20]]  # in order, at most 8 at a time
    for item, answer in zip(range(1, 21), answers, strict=True):
        if item % 5 == 0:
            assert isinstance(answer, ValueError) and answer.args == (item,)
        else:
            assert answer == item * 2


def test_a_batch_that_fails_as_a_whole_fails_each_of_its_calls_and_the_next_batch_still_runs() -> None:
    def fail_once(items: list[int]) -> list[int | BaseException]:
        if items[0] == 1:
            raise RuntimeError("store away")
        return list(items)

    async def scenario() -> tuple[list[object], int]:
        with ThreadPoolExecutor(1) as pool:
            batches = Batches(fail_once, run_in(pool))
            failed = await asyncio.gather(batches(1), return_exceptions=True)
            return [*failed, await batches(2)], batches.batches

    (failed, later), count = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError) and later == 2 and count == 2


def test_a_lone_call_does_not_wait_for_company() -> None:
    async def scenario() -> float:
        with ThreadPoolExecutor(1) as pool:
            batches = Batches(lambda items: list(items), run_in(pool))
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert await batches(7) == 7
            return loop.time() - start

    assert asyncio.run(scenario()) < 0.05


@pytest.mark.parametrize("size", [1, 64])
def test_every_call_is_answered_exactly_once(size: int) -> None:
    async def scenario() -> list[int]:
        with ThreadPoolExecutor(1) as pool:
            batches = Batches(lambda items: [i + 1 for i in items], run_in(pool), max_items=size)
            return await asyncio.gather(*(batches(i) for i in range(200)))

    assert asyncio.run(scenario()) == list(range(1, 201))
