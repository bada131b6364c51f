"""Where a web process's store and blob work runs, so that its event loop never waits on the database or the disk.

One writer thread takes every change in the order it was asked for: it owns the queue and the job states, like an
actor, so admissions, starts, cancels and outcomes never interleave. A few reader threads answer reads (status,
replays, lists) beside it; SQLite in WAL mode and PostgreSQL both let them read while the writer writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Offload:
    def __init__(self, readers: int = 4, transactions: int = 4) -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="oldphoto-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="oldphoto-reader")
        self._transactions = ThreadPoolExecutor(transactions, thread_name_prefix="oldphoto-transaction")

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, partial(fn, *args))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, partial(fn, *args))

    async def transact(self, fn: Callable[..., T], *args: Any) -> T:
        """A change whose order the database keeps itself (its own transaction and locks): several at once, beside
        the writer, so that their commits overlap (a shared queue in PostgreSQL)."""
        return await asyncio.get_running_loop().run_in_executor(self._transactions, partial(fn, *args))

    def write_later(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """From any thread (the worker pool's, say): queued behind every change asked for before it."""
        future = self._writer.submit(fn, *args)
        future.add_done_callback(_log_failure)
        return future

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._transactions.shutdown(wait=True)
        self._readers.shutdown(wait=True)


def _log_failure(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("a store change failed", exc_info=future.exception())
