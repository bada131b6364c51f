from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oldphoto.jobs.scheduler import FairQueue


def drain(queue: FairQueue) -> list[str]:
    order = []
    while (job := queue.pop()) is not None:
        order.append(job)
    return order


def test_one_users_many_jobs_do_not_starve_another_users_one() -> None:
    queue = FairQueue()
    for i in range(10):
        queue.push(f"a{i}", "alice")
    queue.push("b0", "bob")
    assert drain(queue)[:3] == ["a0", "b0", "a1"]


def test_first_come_first_served_within_a_user_and_round_robin_across() -> None:
    queue = FairQueue()
    for job, owner in [("a0", "a"), ("a1", "a"), ("b0", "b"), ("c0", "c"), ("b1", "b"), ("a2", "a")]:
        queue.push(job, owner)
    assert drain(queue) == ["a0", "b0", "c0", "a1", "b1", "a2"]


def test_positions_predict_the_pop_order() -> None:
    queue = FairQueue()
    for job, owner in [("a0", "a"), ("a1", "a"), ("b0", "b"), ("a2", "a"), ("c0", "c")]:
        queue.push(job, owner)
    positions = queue.positions()
    assert sorted(positions, key=positions.get) == drain(queue)


def test_remove_takes_a_job_out_and_moves_the_rest_up() -> None:
    queue = FairQueue()
    for job, owner in [("a0", "a"), ("b0", "b"), ("a1", "a")]:
        queue.push(job, owner)
    assert queue.remove("b0") and not queue.remove("b0")
    assert queue.positions() == {"a0": 1, "a1": 2}
    assert len(queue) == 2 and "b0" not in queue


@settings(max_examples=60, deadline=None)
@given(
    waiting=st.lists(st.sampled_from("abcde"), max_size=12),
    batch=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8),
)
def test_a_batchs_places_are_its_places_once_all_are_in(waiting: list[str], batch: list[str]) -> None:
    queue = FairQueue()
    for i, owner in enumerate(waiting):
        queue.push(f"w{i}", owner)
    places = queue.push_many([(f"b{i}", owner) for i, owner in enumerate(batch)])
    positions = queue.positions()
    assert places == [positions[f"b{i}"] for i in range(len(batch))]


def test_new_users_in_a_batch_are_placed_without_walking_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Admission must not slow down as the queue grows: a new user's place is the count of lanes before it."""
    queue = FairQueue()
    for i in range(10_000):
        queue.push(f"w{i}", f"u{i}")
    monkeypatch.setattr(FairQueue, "place_of", lambda self, job_id: pytest.fail("walked the lanes"))
    assert queue.push_many([(f"n{i}", f"new{i}") for i in range(32)]) == list(range(10_001, 10_033))
@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["push", "push", "push", "pop", "remove"]), st.sampled_from("abcd"), st.integers(0, 9)), max_size=40))
def test_every_place_is_the_one_pop_would_give(ops: list[tuple[str, str, int]]) -> None:
    """`place_of` (one job, no full count), `positions` (everyone) and `pop` (the truth) agree after any history."""
    queue = FairQueue()
    for op, owner, n in ops:
        job = f"{owner}{n}"
        if op == "push":
            queue.push(job, owner)
        elif op == "pop":
            queue.pop()
        else:
            queue.remove(job)
    positions = queue.positions()
    assert {job: queue.place_of(job) for job in positions} == positions
    assert queue.place_of("nobody") is None
    assert sorted(positions, key=positions.get) == drain(queue)
    assert len(queue) == 0 and queue.pop() is None
