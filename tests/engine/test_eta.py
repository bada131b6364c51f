from __future__ import annotations

import numpy as np

from oldphoto.engine import Reporter, RunOptions, run_workflow, workflow_from_steps
from oldphoto.engine.eta import SEED, Countdown, Expected, Plan, PlanEntry, seed_seconds, size_bucket
from oldphoto.protocol import Note


def _plan(*entries: tuple[str, str, float]) -> Plan:
    return Plan(tuple(PlanEntry(*e) for e in entries))


def test_the_seconds_left_are_the_stages_not_begun_plus_the_rest_of_the_current_one() -> None:
    countdown = Countdown(_plan(("a", "load_model", 8.0), ("a", "inference", 4.0), ("b", "inference", 2.0)))
    assert countdown.left("a", "load_model", 0.0) == 14.0
    assert countdown.left("a", "load_model", 0.5) == 10.0
    assert countdown.left("a", "inference", 0.25) == 5.0
    assert countdown.left("b", "inference", 1.0) == 0.0


def test_late_words_from_an_earlier_stage_do_not_put_time_back() -> None:
    countdown = Countdown(_plan(("a", "inference", 4.0), ("b", "inference", 2.0)))
    assert countdown.left("b", "inference", 0.5) == 1.0
    assert countdown.left("a", "inference", 0.0) == 1.0  # the place stays at b: the last estimate again
    assert countdown.left("b", "unheard_of", 0.0) == 1.0
    assert countdown.left("b", "inference", 0.75) == 0.5


def test_without_a_plan_there_is_no_estimate() -> None:
    assert Countdown(Plan()).left("a", "inference", 0.5) is None


def test_before_the_first_planned_stage_all_of_it_is_left() -> None:
    assert Countdown(_plan(("a", "inference", 4.0))).left("x", "preprocess", 0.0) == 4.0


def test_a_first_run_uses_the_seed_table_and_a_learned_value_replaces_it() -> None:
    workflow = workflow_from_steps("denoise,sharpen")
    pixels = 2_000_000
    seeded = Expected().plan(workflow, pixels)
    assert [(e.node, e.stage) for e in seeded.entries] == [
        ("denoise", "preprocess"), ("denoise", "inference"), ("denoise", "postprocess"),
        ("sharpen", "preprocess"), ("sharpen", "inference"), ("sharpen", "postprocess"),
    ]
    denoise = seeded.entries[1]
    assert denoise.seconds == seed_seconds("Denoise", "inference", pixels) == 0.05 + 4.3 * 2
    learned = Expected({("Denoise", "inference", size_bucket(pixels)): 3.0}).plan(workflow, pixels)
    assert learned.entries[1].seconds == 3.0
    # The last stage of the job is learned with the save (its own key); the seed adds the encode.
    assert seeded.entries[-1].seconds == seed_seconds("Sharpen", "postprocess", pixels, last=True) > 0


def test_size_buckets_double() -> None:
    assert size_bucket(1) == size_bucket(256 * 256) == 0
    assert size_bucket(256 * 256 + 1) == 1
    assert size_bucket(1_000_000) == 4
    assert size_bucket(2_000_000) == 5


def test_a_run_says_a_decreasing_eta_from_its_plan_not_from_elapsed_time() -> None:
    notes: list[Note] = []
    expected = Expected({("Sharpen", "inference", size_bucket(48 * 64)): 30.0, ("Sharpen", "postprocess+save", 0): 1.0})
    reporter = Reporter(notes.append, expected=expected)
    image = np.zeros((48, 64, 3), np.uint8)
    run_workflow(workflow_from_steps("sharpen"), image, options=RunOptions(), reporter=reporter)
    etas = [n.eta_s for n in notes]
    assert all(eta is not None for eta in etas), etas
    assert etas == sorted(etas, reverse=True), etas  # type: ignore[type-var]
    assert etas[0] == 31.0  # all of it, though the run is milliseconds old: elapsed time plays no part
    assert etas[-1] == 1.0  # the save is still to come


def test_every_seeded_stage_is_one_a_node_says() -> None:
    stages = {"preprocess", "load_model", "inference", "postprocess"}
    assert all(stage in stages for table in SEED.values() for stage, _, _ in table)


def test_a_stage_never_timed_here_moves_toward_its_own_pace_and_a_learned_one_keeps_its_seconds() -> None:
    now = [0.0]
    seeded = Countdown(Plan((PlanEntry("a", "inference", 2.0, seeded=True), PlanEntry("a", "postprocess", 1.0))), clock=lambda: now[0])
    learned = Countdown(Plan((PlanEntry("a", "inference", 2.0), PlanEntry("a", "postprocess", 1.0))), clock=lambda: now[0])
    for countdown in (seeded, learned):
        assert countdown.left("a", "inference", 0.0) == 3.0
    now[0] = 10.0  # half done after 10 s: the seed's 2 s for all of it was far off
    assert learned.left("a", "inference", 0.5) == 2.0  # 1 s of its 2 left, then 1 s
    # (1 - 0.5) x 1 s expected + 0.5 x 10 s at its own pace, then the 1 s after it
    assert seeded.left("a", "inference", 0.5) == 6.5
    now[0] = 11.0
    assert seeded.left("a", "postprocess", 0.0) == 1.0  # a new stage: its own seconds


def test_the_plan_marks_which_stages_come_from_the_seed_table() -> None:
    workflow = workflow_from_steps("sharpen")
    pixels = 48 * 64
    plan = Expected({("Sharpen", "inference", size_bucket(pixels)): 30.0}).plan(workflow, pixels)
    assert [(e.stage, e.seeded) for e in plan.entries] == [("preprocess", True), ("inference", False), ("postprocess", True)]
