"""Previews: at most one per MIN_GAP_S per run, made only when sent, never over MAX_SIDE; the canvas fills in."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from oldphoto.engine.previews import MAX_SIDE, MIN_GAP_S, Canvas, Previews
from oldphoto.engine.reporter import NodeReporter, Reporter
from oldphoto.protocol import Note


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def node_report() -> NodeReporter:
    report = Reporter(sink=lambda note: None).for_node("up", "upscale", 0.0, 1.0)
    report.stage("inference", "upscale.inference")
    report.step(0.5)
    return report


def decoded(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not an image"
    return image


def test_at_most_two_a_second_and_a_picture_is_made_only_when_it_goes() -> None:
    clock, sent, made = Clock(), [], []
    previews = Previews(lambda note, data: sent.append((clock.now, note)), clock=clock)
    report = node_report()

    def picture() -> np.ndarray:
        made.append(clock.now)
        return np.zeros((10, 10, 3), np.uint8)

    for _ in range(100):  # an offer every 50 ms for 5 s, as fast tiles would
        previews.offer(report, picture)
        clock.now += 0.05

    times = [at for at, _ in sent]
    assert made == times, "a picture was made for an offer that was turned away"
    assert all(b - a >= MIN_GAP_S for a, b in zip(times, times[1:])), times
    assert all(sum(1 for t in times if start <= t < start + 1.0) <= 2 for start in times), times
    assert 9 <= len(times) <= 10, "offers that were due were turned away"
    assert [note.preview.frame for _, note in sent] == list(range(1, len(sent) + 1))


def test_the_note_says_where_the_job_stands_and_what_the_picture_is() -> None:
    sent: list[tuple[Note, bytes]] = []
    report = node_report()
    Previews(lambda note, data: sent.append((note, data))).offer(report, lambda: np.full((900, 1200, 3), 200, np.uint8))

    (note, data), = sent
    assert note.type == "preview"
    assert (note.stage, note.source, note.node) == ("inference", "upscale", "up")
    assert note.message_key == "upscale.inference"
    assert note.progress == report.run.progress
    assert note.preview is not None and note.preview.url is None  # the job system names it
    assert (note.preview.width, note.preview.height) == (256, 192)
    assert decoded(data).shape == (192, 256, 3)
    assert data[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(("shape", "expected"), [((4000, 300), (256, 19)), ((50, 80), (50, 80)), ((1, 5000), (1, 256))])
def test_never_over_the_long_side_nor_enlarged(shape: tuple[int, int], expected: tuple[int, int]) -> None:
    sent: list[tuple[Note, bytes]] = []
    Previews(lambda note, data: sent.append((note, data))).offer(node_report(), lambda: np.zeros((*shape, 3), np.uint8))
    (note, data), = sent
    assert note.preview is not None
    assert (note.preview.height, note.preview.width) == expected
    assert decoded(data).shape[:2] == expected
    assert max(expected) <= MAX_SIDE


def test_without_a_sink_nothing_is_made() -> None:
    previews = Previews()
    assert not previews.wanted
    assert previews.offer(node_report(), lambda: pytest.fail("made a picture nobody wants")) is False


def test_a_canvas_starts_as_the_input_and_fills_in_piece_by_piece() -> None:
    start = np.zeros((300, 400, 3), np.uint8)
    final = np.full((600, 800, 3), 255, np.uint8)  # twice the size, as an upscale makes it
    canvas = Canvas(start, 600, 800)
    assert canvas.picture().shape == (192, 256, 3)
    assert not canvas.picture().any()

    canvas.paste(0, 0, final[:300, :400])  # the top left tile
    assert canvas.picture()[:96, :128].min() == 255
    assert not canvas.picture()[96:].any() and not canvas.picture()[:, 128:].any()

    for top, left in ((0, 400), (300, 0), (300, 400)):
        canvas.paste(top, left, final[top : top + 300, left : left + 400])
    assert canvas.picture().min() == 255, "pieces side by side left a gap"


def test_a_canvas_never_writes_into_its_start() -> None:
    start = np.zeros((40, 60, 3), np.uint8)  # smaller than a preview: the canvas is its size
    Canvas(start, 40, 60).paste(0, 0, np.full((40, 60, 3), 9, np.uint8))
    assert not start.any()
