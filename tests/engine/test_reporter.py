from __future__ import annotations

import numpy as np
import pytest

from oldphoto.engine import CancelToken, Reporter, RunOptions, run_workflow, workflow_from_steps
from oldphoto.engine import reporter as reporter_module
from oldphoto.errors import Cancelled
from oldphoto.protocol import Note


def test_progress_never_decreases_and_each_node_owns_its_share() -> None:
    notes: list[Note] = []
    reporter = Reporter(notes.append, span=(1, 99))
    first = reporter.for_node("a", "denoise", 0.0, 0.5)
    second = reporter.for_node("b", "sharpen", 0.5, 1.0)
    first.stage("preprocess")
    first.stage("inference")
    for i in range(1, 5):
        first.step(i / 4)
    first.stage("postprocess")
    second.stage("preprocess")
    first.step(0.0)  # a late report from an earlier node must not pull the bar back
    second.stage("inference")
    second.stage("postprocess")
    values = [n.progress for n in notes]
    assert values == sorted(values)
    assert max(n.progress for n in notes if n.node == "a") <= 50 <= min(n.progress for n in notes if n.node == "b" and n.stage != "preprocess")
    assert all(1 <= v <= 99 for v in values)


def test_a_late_stage_report_from_an_earlier_node_does_not_pull_the_bar_back() -> None:
    """A stage report is never throttled: it reaches the run's reporter however late it comes."""
    notes: list[Note] = []
    reporter = Reporter(notes.append, span=(1, 99))
    first = reporter.for_node("a", "denoise", 0.0, 0.5)
    second = reporter.for_node("b", "sharpen", 0.5, 1.0)
    first.stage("postprocess")
    second.stage("inference")
    high = notes[-1].progress
    first.stage("preprocess")  # the earlier node says a stage it left long ago
    values = [n.progress for n in notes]
    assert values == sorted(values), values
    assert notes[-1].progress == high == reporter.progress
    second.stage("postprocess")
    assert notes[-1].progress > high


def test_with_the_step_throttle_off_every_late_step_still_keeps_the_bar_sorted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The throttle drops a step that does not move the percent: off, every late step reaches the run's reporter."""
    monkeypatch.setattr(reporter_module, "MIN_STEP_INTERVAL_S", 0.0)
    notes: list[Note] = []
    reporter = Reporter(notes.append, span=(1, 99))
    first = reporter.for_node("a", "denoise", 0.0, 0.5)
    second = reporter.for_node("b", "sharpen", 0.5, 1.0)
    first.stage("inference")
    for i in range(1, 5):
        first.step(i / 4)
    second.stage("inference")
    second.step(0.5)
    sent = len(notes)
    first.step(0.0)  # late, and not throttled: it is said, at the bar's current value
    second.step(0.25)  # a step back inside the running node, too
    assert len(notes) == sent + 2, "the late steps were throttled: this test would not see a bar that goes down"
    values = [n.progress for n in notes]
    assert values == sorted(values), values
    assert notes[-1].progress == notes[-3].progress == reporter.progress


def test_steps_keep_the_stage_sentence_and_its_parameters() -> None:
    notes: list[Note] = []
    node = Reporter(notes.append).for_node("d", "denoise", 0.0, 1.0)
    node.stage("inference", strength=5)
    node.step(0.5)
    assert notes[-1].message_key == "denoise.inference" and notes[-1].message_params == {"strength": 5}
    assert notes[-1].step_progress == 0.5


def test_a_cancelled_token_stops_the_next_report() -> None:
    token = CancelToken()
    node = Reporter(lambda note: None, cancel=token).for_node("d", "denoise", 0.0, 1.0)
    node.stage("inference")
    token.cancel()
    with pytest.raises(Cancelled):
        node.step(0.5)


def test_a_whole_run_reports_in_stage_order_and_cancels_between_nodes() -> None:
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    notes: list[Note] = []
    out = run_workflow(workflow_from_steps("denoise,sharpen"), image, options=RunOptions(), reporter=Reporter(notes.append))
    assert out.shape == image.shape
    assert [n.source for n in notes][0] == "denoise" and notes[-1].source == "sharpen"
    token = CancelToken()

    def cancel_after_denoise(note: Note) -> None:
        if note.source == "denoise" and note.stage == "postprocess":
            token.cancel()

    with pytest.raises(Cancelled):
        run_workflow(workflow_from_steps("denoise,sharpen"), image, options=RunOptions(), reporter=Reporter(cancel_after_denoise, cancel=token))


def test_a_minimum_step_gap_leaves_out_quick_steps_but_never_a_stage_or_a_stages_last_step() -> None:
    notes: list[Note] = []
    node = Reporter(notes.append, span=(1, 99), min_step_gap_s=60.0).for_node("a", "colorize", 0.0, 1.0)
    node.stage("inference")
    for i in range(1, 23):
        node.step(i / 22)
    node.stage("postprocess")
    said = [(n.stage, n.step_progress) for n in notes]
    assert said == [("inference", None), ("inference", 1.0), ("postprocess", None)]


def test_without_a_gap_every_step_that_moves_the_bar_is_said() -> None:
    notes: list[Note] = []
    node = Reporter(notes.append, span=(1, 99)).for_node("a", "colorize", 0.0, 1.0)
    node.stage("inference")
    for i in range(1, 23):
        node.step(i / 22)
    assert len([n for n in notes if n.step_progress is not None]) == 22
    assert notes[2].step_progress == round(2 / 22, 4)


def test_a_token_follows_the_flag_it_was_given_so_another_process_can_cancel() -> None:
    import threading

    from oldphoto.engine.cancel import CancelToken

    flag = threading.Event()  # stands for the multiprocessing.Event a worker is handed
    token = CancelToken(flag)
    assert not token.cancelled
    flag.set()  # set by someone else, never through the token
    assert token.cancelled


def test_a_nodes_slice_is_its_share_of_the_runs_span() -> None:
    reporter = Reporter(lambda note: None, span=(10, 90))
    node = reporter.for_node("b", "sharpen", 0.5, 0.75)
    assert (node.lo, node.hi) == (50, 70)


def test_the_run_never_passes_on_a_lower_progress_than_it_said_and_its_first_step_is_said() -> None:
    notes: list[Note] = []
    reporter = Reporter(notes.append, span=(1, 99), min_step_gap_s=10.0)
    node = reporter.for_node("a", "denoise", 0.0, 1.0)
    node.step(0.5)  # before any stage: the node is preprocessing; said, though the gap is long
    assert [(n.stage, n.message_key) for n in notes] == [("preprocess", "preprocess")]
    reporter.emit(Note(stage="inference", message_key="inference", progress=50))
    reporter.emit(Note(stage="inference", message_key="inference", progress=30))
    assert [n.progress for n in notes][-2:] == [50, 50]
