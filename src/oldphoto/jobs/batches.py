"""Calls that wait together: whatever is asked while one batch runs goes in the next one, in the order asked.

Admissions are the case: each used to be a transaction of its own, with its own commit (a disk flush) and, in a
shared queue, its own turn at the queue's lock; a batch pays both once. Nothing waits to fill a batch: the first
call starts one at once, and the calls that come while it runs make up the next (LitServe's dynamic batching,
without its timer). Each call gets its own answer or its own exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741  # an item asked for
R = TypeVar("R")  # what one item's call returns

BatchRun = Callable[[list[I]], list[R | BaseException]]  # one answer per item, in order
Executor = Callable[[BatchRun[I, R], list[I]], Awaitable[list[R | BaseException]]]  # where a batch runs (a thread)


class Batches(Generic[I, R]):
    def __init__(self, run: BatchRun[I, R], execute: Executor[I, R], max_items: int = 64) -> None:
        self.run = run
        self.execute = execute
        self.max_items = max_items
        self.batches = 0
        self.items = 0
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference to a task

    async def __call__(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_items], self._pending[self.max_items :]
                try:
                    answers = await self.execute(self.run, [item for item, _ in batch])
                except BaseException as exc:  # the whole batch failed (the store went away): each caller hears it
                    answers = [exc] * len(batch)
                self.batches += 1
                self.items += len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if future.done():  # its caller went away meanwhile
                        continue
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            self._drainer = None
