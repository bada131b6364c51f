from __future__ import annotations

import numpy as np
import pytest

from oldphoto.engine import CancelToken, Reporter, RunOptions, run_workflow, workflow_from_steps
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
