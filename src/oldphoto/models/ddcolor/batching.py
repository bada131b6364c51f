"""Concurrent colorize calls sharing one forward pass.

Every colorize job resizes its photo to the same model input, so jobs running at the same time in one process can
go through the network as one batch. `Batcher.infer` is called from each job's own thread; the calls that arrive
within `max_wait_s` of the first (or until `max_batch` are there) run as one batched pass on a runner thread. Each
caller still sees its own pass: `on_block(index, total, name)` is called in the caller's thread after every block,
and a caller whose `cancelled()` turns true gets `Cancelled` in its own thread at the next block, while the pass
goes on for the others (its rows are dropped from the batch from then on). An exception raised by a caller's
`on_block` (a cancel check, say) ends that caller the same way.

With `max_batch=1` (the default setting: batching measured slower on a two-core CPU, docs/benchmarks.md)
`infer` is the plain `Colorizer.infer` in the caller's thread, with the cancel check at each block.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oldphoto.errors import Cancelled
from oldphoto.models.ddcolor.colorizer import Colorizer
from oldphoto.models.ddcolor.lens import QueryResponses, row_of
from oldphoto.models.ddcolor.progress import BlockCallback

log = logging.getLogger(__name__)

# How often a queued caller (its batch not started yet) looks at its cancel flag.
QUEUED_POLL_S = 0.05


@dataclass(eq=False)
class _Member:
    tensor: np.ndarray
    cancelled: Callable[[], bool]
    events: queue.SimpleQueue[tuple[Any, ...]] = field(default_factory=queue.SimpleQueue)
    gone: threading.Event = field(default_factory=threading.Event)  # the caller stopped listening
    started: threading.Event = field(default_factory=threading.Event)
    lens: bool = False  # wants the query lens's responses (lens.py) beside ab

    def is_cancelled(self) -> bool:
        try:
            return bool(self.cancelled())
        except Exception:  # a broken flag counts as a cancel rather than stopping the whole batch
            return True


class Batcher:
    def __init__(self, colorizer: Colorizer, max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.colorizer = colorizer
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_s)
        self._pending: queue.SimpleQueue[_Member | None] = queue.SimpleQueue()
        self._runner: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.batches_run = 0  # for tests and metrics: passes made, and members they carried
        self.members_run = 0

    def infer(
        self,
        tensor: np.ndarray,
        on_block: BlockCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """ab (1, 2, S, S) for one gray RGB input (1, 3, S, S), as `Colorizer.infer`, possibly batched with others."""
        return self._infer(tensor, on_block, cancelled, lens=False)[0]

    def infer_lens(
        self,
        tensor: np.ndarray,
        on_block: BlockCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[np.ndarray, QueryResponses | None]:
        """`infer`, with this image's query lens responses (a batch of one; None where the runtime has no lens)."""
        return self._infer(tensor, on_block, cancelled, lens=True)

    def _infer(
        self, tensor: np.ndarray, on_block: BlockCallback | None, cancelled: Callable[[], bool] | None, lens: bool
    ) -> tuple[np.ndarray, QueryResponses | None]:
        if tensor.ndim != 4 or tensor.shape[0] != 1:
            raise ValueError(f"Batcher.infer takes one image, (1, 3, S, S); got {tuple(tensor.shape)}")
        flag = cancelled or (lambda: False)
        if self.max_batch == 1:
            if lens:
                return self.colorizer.infer_lens(tensor, on_block=_checked(on_block, flag))
            return self.colorizer.infer(tensor, on_block=_checked(on_block, flag)), None
        if self._closed:
            raise RuntimeError("the Batcher is closed")
        member = _Member(np.ascontiguousarray(tensor, dtype=np.float32), flag, lens=lens)
        self._ensure_runner()
        self._pending.put(member)
        return self._wait(member, on_block)

    def close(self) -> None:
        """Stop the runner thread once the batch in progress (if any) is done."""
        self._closed = True
        runner = self._runner
        if runner is not None:
            self._pending.put(None)
            runner.join()

    # --- the caller's side -------------------------------------------------------------------------------------

    def _wait(self, member: _Member, on_block: BlockCallback | None) -> tuple[np.ndarray, QueryResponses | None]:
        try:
            while True:
                try:
                    event = member.events.get(timeout=None if member.started.is_set() else QUEUED_POLL_S)
                except queue.Empty:
                    if member.is_cancelled():  # still queued: leave before the batch starts
                        raise Cancelled() from None
                    continue
                kind = event[0]
                if kind == "block":
                    if member.is_cancelled():
                        raise Cancelled()
                    if on_block is not None:
                        on_block(*event[1:])
                elif kind == "done":
                    return event[1], event[2]
                elif kind == "cancel":
                    raise Cancelled()
                elif kind == "error":
                    raise event[1]
        finally:
            member.gone.set()

    # --- the runner's side -------------------------------------------------------------------------------------

    def _ensure_runner(self) -> None:
        with self._start_lock:
            if self._runner is None or not self._runner.is_alive():
                self._runner = threading.Thread(target=self._run_forever, name="ddcolor-batcher", daemon=True)
                self._runner.start()

    def _run_forever(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait_s
            stop = False
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    member = self._pending.get(timeout=remaining)
                except queue.Empty:
                    break
                if member is None:
                    stop = True
                    break
                batch.append(member)
            # Members of another input size (a node's own input_size) make passes of their own.
            groups: dict[tuple[int, ...], list[_Member]] = {}
            for member in batch:
                if not member.gone.is_set():
                    groups.setdefault(tuple(member.tensor.shape), []).append(member)
            for members in groups.values():
                self._run_batch(members)
            if stop:
                return

    def _run_batch(self, members: list[_Member]) -> None:
        active = list(members)
        for member in active:
            member.started.set()
        self.batches_run += 1
        self.members_run += len(active)

        def after_block(index: int, total: int, name: str) -> Sequence[int] | None:
            nonlocal active
            for member in active:
                member.events.put(("block", index, total, name))
            keep = [i for i, member in enumerate(active) if not (member.gone.is_set() or member.is_cancelled())]
            if len(keep) == len(active):
                return None
            for i, member in enumerate(active):
                if i not in keep:
                    member.events.put(("cancel",))
            active = [active[i] for i in keep]
            return keep

        try:
            x = np.concatenate([member.tensor for member in active]) if len(active) > 1 else active[0].tensor
            # The lens runs for the whole batch when one member wants it; each such member gets its own row.
            lens: QueryResponses | None = None
            if any(member.lens for member in active):
                ab, lens = self.colorizer.infer_batch_lens(x, after_block)
            else:
                ab = self.colorizer.infer_batch(x, after_block)
        except BaseException as exc:  # the members re-raise it in their own threads
            for member in active:
                member.events.put(("error", exc))
            if not isinstance(exc, Exception):
                raise
            return
        for row, member in enumerate(active):
            own = row_of(lens, row) if lens is not None and member.lens else None
            member.events.put(("done", ab[row : row + 1].copy(), own))


_SHARED: weakref.WeakKeyDictionary[Colorizer, Batcher] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def shared_batcher(colorizer: Colorizer, max_batch: int, max_wait_s: float) -> Batcher:
    """The one Batcher of this process for a colorizer (jobs on the same model must share it to share passes).

    A call with other limits than the existing Batcher's replaces it (the old one finishes what it has).
    """
    with _SHARED_LOCK:
        batcher = _SHARED.get(colorizer)
        if batcher is not None and (batcher.max_batch, batcher.max_wait_s) == (max_batch, max(0.0, max_wait_s)):
            return batcher
        if batcher is not None:
            batcher._closed = True
            if batcher._runner is not None:
                batcher._pending.put(None)  # its runner ends after the batch in hand; no join under the lock
        batcher = Batcher(colorizer, max_batch, max_wait_s)
        _SHARED[colorizer] = batcher
        return batcher


def _checked(on_block: BlockCallback | None, cancelled: Callable[[], bool]) -> BlockCallback:
    def check(index: int, total: int, name: str) -> None:
        if cancelled():
            raise Cancelled()
        if on_block is not None:
            on_block(index, total, name)

    return check
