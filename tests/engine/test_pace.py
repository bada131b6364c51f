"""A run's pace: each node's units of work, its live speed over a short window and its speed over the whole stage."""

from __future__ import annotations

from oldphoto.engine import Reporter
from oldphoto.engine.pace import Pace
from oldphoto.protocol import Note


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_live_speed_follows_the_last_seconds_and_the_summary_the_whole_stage() -> None:
    clock = Clock()
    pace = Pace(clock, window_s=3.0)
    assert pace.now() is None
    pace.stage_began("1")
    for done in range(1, 11):  # 10 blocks, one a second
        clock.now += 1.0
        pace.counted("1", "block", done, 20)
    for done in range(11, 21):  # then 4 a second
        clock.now += 0.25
        pace.counted("1", "block", done, 20)
    live = pace.now()
    assert live is not None and (live.node, live.unit, live.done, live.total) == ("1", "block", 20, 20)
    assert 3.0 <= live.per_s <= 4.0, live  # the window holds the fast blocks, not the slow start
    (whole,) = pace.summary()
    assert whole.seconds == 12.5 and whole.per_s == round(20 / 12.5, 3)


def test_each_node_counts_on_its_own_and_the_latest_one_is_live() -> None:
    clock = Clock()
    pace = Pace(clock)
    pace.stage_began("1")
    clock.now += 2.0
    pace.counted("1", "block", 1, 1)
    pace.stage_began("2")
    clock.now += 1.0
    pace.counted("2", "tile", 1, 4)
    clock.now += 1.0
    pace.counted("2", "tile", 2, 4)
    live = pace.now()
    assert live is not None and (live.node, live.unit, live.per_s) == ("2", "tile", 1.0)
    assert [(s.node, s.unit, s.done, s.seconds, s.per_s) for s in pace.summary()] == [("1", "block", 1, 2.0, 0.5), ("2", "tile", 2, 2.0, 1.0)]


def test_a_nodes_count_is_its_step_and_its_pace() -> None:
    notes: list[Note] = []
    reporter = Reporter(notes.append)
    node = reporter.for_node("7", "upscale", 0.0, 1.0)
    node.stage("inference")
    node.count(3, 12, "tile", "upscale.tile", index=3, total=12)
    assert notes[-1].step_progress == 0.25 and notes[-1].message_params == {"index": 3, "total": 12}
    live = reporter.pace.now()
    assert live is not None and (live.node, live.unit, live.done, live.total) == ("7", "tile", 3, 12)


def test_no_speed_is_live_once_the_stage_that_counted_has_ended() -> None:
    clock = Clock()
    pace = Pace(clock)
    pace.stage_began("1")
    clock.now += 1.0
    pace.counted("1", "band", 2, 2)
    pace.stage_began("2")  # the next node loads its model: it counts nothing for a while
    assert pace.now() is None
    assert [(s.node, s.done) for s in pace.summary()] == [("1", 2)]
