"""The Batcher: concurrent calls share a pass; each keeps its own progress, its own cancel, and its own result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from oldphoto.errors import Cancelled
from oldphoto.models.ddcolor import Colorizer
from oldphoto.models.ddcolor.batching import Batcher
from tests.models.conftest import CPU, FAST_INPUT

TOTAL = 22


def gray(seed: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, FAST_INPUT, FAST_INPUT, generator=generator).expand(1, 3, -1, -1).contiguous().numpy()


@pytest.fixture(scope="module", params=["torch", "exact"])
def colorizer(request: pytest.FixtureRequest, tiny_network: torch.nn.Module) -> Colorizer:
    """The segment runtime (a batch shrinks as members leave) and the network's own forward (it cannot shrink)."""
    return Colorizer(tiny_network, CPU, runtime=request.param)


@pytest.fixture(scope="module")
def singles(colorizer: Colorizer) -> dict[int, np.ndarray]:
    return {seed: colorizer.infer(gray(seed)) for seed in range(4)}


class Member:
    """One job's thread: its events (with the thread each came in), its cancel flag, its result or error."""

    def __init__(self, seed: int, cancel_after: int | None = None, fail_after: int | None = None) -> None:
        self.seed = seed
        self.cancel_after = cancel_after
        self.fail_after = fail_after
        self.flag = threading.Event()
        self.events: list[tuple[int, int, str]] = []
        self.threads: set[int] = set()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None

    def on_block(self, index: int, total: int, name: str) -> None:
        self.events.append((index, total, name))
        self.threads.add(threading.get_ident())
        if index == self.cancel_after:
            self.flag.set()
        if index == self.fail_after:
            raise ValueError("this job's own callback failed")

    def run(self, batcher: Batcher) -> None:
        self.threads_expected = threading.get_ident()
        try:
            self.result = batcher.infer(gray(self.seed), on_block=self.on_block, cancelled=self.flag.is_set)
        except BaseException as exc:  # recorded; each test says what it expects
            self.error = exc


def run_all(batcher: Batcher, members: list[Member]) -> None:
    threads = [threading.Thread(target=m.run, args=(batcher,)) for m in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)


def close_to(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float(np.abs(a - b).max()) < 1e-3  # batched GEMMs sum in another order


def test_concurrent_calls_share_one_pass_and_get_their_own_results(colorizer: Colorizer, singles: dict[int, Any]) -> None:
    batcher = Batcher(colorizer, max_batch=3, max_wait_s=5.0)  # three callers fill the batch: no waiting
    members = [Member(seed) for seed in range(3)]
    try:
        run_all(batcher, members)
    finally:
        batcher.close()
    assert batcher.batches_run == 1 and batcher.members_run == 3
    for member in members:
        assert member.error is None and member.result is not None
        assert close_to(member.result, singles[member.seed])
        # Every block, in order, delivered in the caller's own thread.
        assert [e[0] for e in member.events] == list(range(1, TOTAL + 1))
        assert [e[2] for e in member.events] == colorizer.block_names
        assert member.threads == {member.threads_expected}


def test_a_cancelled_member_stops_at_the_next_block_and_the_others_finish(colorizer: Colorizer, singles: dict[int, Any]) -> None:
    batcher = Batcher(colorizer, max_batch=3, max_wait_s=5.0)
    members = [Member(0), Member(1, cancel_after=5), Member(2)]
    try:
        run_all(batcher, members)
    finally:
        batcher.close()
    quitter = members[1]
    assert isinstance(quitter.error, Cancelled) and quitter.result is None
    assert [e[0] for e in quitter.events] == [1, 2, 3, 4, 5]  # the flag turned at 5: Cancelled at the next block
    for member in (members[0], members[2]):
        assert member.error is None and member.result is not None
        assert close_to(member.result, singles[member.seed])
        assert len(member.events) == TOTAL


def test_a_member_whose_callback_raises_gets_its_own_error(colorizer: Colorizer, singles: dict[int, Any]) -> None:
    batcher = Batcher(colorizer, max_batch=2, max_wait_s=5.0)
    members = [Member(0, fail_after=3), Member(3)]
    try:
        run_all(batcher, members)
    finally:
        batcher.close()
    assert isinstance(members[0].error, ValueError) and len(members[0].events) == 3
    assert members[1].error is None and close_to(members[1].result, singles[3])  # type: ignore[arg-type]


def test_a_member_cancelled_while_queued_leaves_before_the_pass(colorizer: Colorizer, singles: dict[int, Any]) -> None:
    batcher = Batcher(colorizer, max_batch=2, max_wait_s=5.0)
    early = Member(1)
    early.flag.set()
    late = Member(2)
    try:
        run_all(batcher, [early, late])
    finally:
        batcher.close()
    assert isinstance(early.error, Cancelled) and early.events == []
    assert late.error is None and close_to(late.result, singles[2])  # type: ignore[arg-type]


def test_when_every_member_leaves_the_pass_stops_and_the_batcher_goes_on(colorizer: Colorizer, singles: dict[int, Any]) -> None:
    batcher = Batcher(colorizer, max_batch=2, max_wait_s=5.0)
    try:
        gone = [Member(0, cancel_after=2), Member(1, cancel_after=2)]
        run_all(batcher, gone)
        assert all(isinstance(m.error, Cancelled) for m in gone)
        assert all(len(m.events) <= 3 for m in gone)
        after = [Member(2), Member(3)]
        run_all(batcher, after)
        assert all(m.error is None and close_to(m.result, singles[m.seed]) for m in after)  # type: ignore[arg-type]
    finally:
        batcher.close()


def test_a_lone_call_runs_after_the_wait(colorizer: Colorizer, singles: dict[int, Any]) -> None:
    batcher = Batcher(colorizer, max_batch=4, max_wait_s=0.05)
    try:
        member = Member(0)
        run_all(batcher, [member])
    finally:
        batcher.close()
    assert member.error is None and close_to(member.result, singles[0])  # type: ignore[arg-type]
    assert batcher.batches_run == 1 and batcher.members_run == 1


def test_batching_off_is_the_plain_call_with_the_cancel_check(colorizer: Colorizer, singles: dict[int, Any]) -> None:
    batcher = Batcher(colorizer, max_batch=1, max_wait_s=0.02)
    events: list[int] = []
    assert np.array_equal(batcher.infer(gray(0), on_block=lambda i, t, n: events.append(i)), singles[0])
    assert events == list(range(1, TOTAL + 1))
    flag = {"set": False}

    def on_block(index: int, total: int, name: str) -> None:
        flag["set"] = index >= 4

    with pytest.raises(Cancelled):
        batcher.infer(gray(0), on_block=on_block, cancelled=lambda: flag["set"])
    assert batcher.batches_run == 0  # no runner thread was involved


def test_many_threads_through_a_small_batch(colorizer: Colorizer, singles: dict[int, Any]) -> None:
    batcher = Batcher(colorizer, max_batch=2, max_wait_s=0.2)
    call: Callable[[int], np.ndarray] = lambda seed: batcher.infer(gray(seed))  # noqa: E731
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(call, [0, 1, 2, 3]))
    finally:
        batcher.close()
    assert all(close_to(r, singles[s]) for s, r in enumerate(results))
    assert batcher.members_run == 4 and 2 <= batcher.batches_run <= 4


def test_one_image_per_call(colorizer: Colorizer) -> None:
    with pytest.raises(ValueError, match="one image"):
        Batcher(colorizer, max_batch=2, max_wait_s=0.01).infer(np.zeros((2, 3, FAST_INPUT, FAST_INPUT), np.float32))


def test_one_shared_batcher_per_colorizer_and_limits(colorizer: Colorizer) -> None:
    from oldphoto.models.ddcolor import shared_batcher

    first = shared_batcher(colorizer, 4, 0.02)
    assert shared_batcher(colorizer, 4, 0.02) is first
    other = shared_batcher(colorizer, 2, 0.02)
    assert other is not first and shared_batcher(colorizer, 2, 0.02) is other
    other.close()
