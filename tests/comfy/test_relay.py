"""comfy/relay.py: ComfyUI's events of one prompt as this service's notes."""

from __future__ import annotations

from oldphoto.comfy.events import Executing, ExecutionCached, ExecutionStart, NodeState, Progress, ProgressState
from oldphoto.comfy.relay import END, ESTIMATE_CAP, START, Paces, PromptRelay

PROMPT = {
    "1": {"class_type": "LoadImage"},
    "2": {"class_type": "DDColor_Colorize"},
    "3": {"class_type": "UpscaleModelLoader"},
    "4": {"class_type": "ImageUpscaleWithModel"},
    "5": {"class_type": "SaveImage"},
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def relay(clock: Clock | None = None, paces: Paces | None = None) -> PromptRelay:
    return PromptRelay(PROMPT, paces or Paces(), clock=clock or Clock())


def test_each_node_gets_its_stage_and_source_and_the_percentage_only_rises() -> None:
    r = relay()
    notes = [r.on_event(ExecutionStart("p"))]
    for node in PROMPT:
        notes.append(r.on_event(Executing("p", node)))
        if node == "4":
            notes += [r.on_event(Progress("p", "4", value, 4)) for value in (1, 2, 3, 4)]
    said = [n for n in notes if n is not None]
    assert [(n.stage, n.source, n.node) for n in said if n.message_key == "comfy.node"] == [
        ("preprocess", "system", "1"),
        ("inference", "colorize", "2"),
        ("load_model", "upscale", "3"),
        ("inference", "upscale", "4"),
        ("postprocess", "system", "5"),
    ]
    progress = [n.progress for n in said]
    assert progress == sorted(progress) and progress[0] == START and progress[-1] < END
    steps = [n.step_progress for n in said if n.message_key == "comfy.step"]
    assert steps == [0.25, 0.5, 0.75, 1.0]


def test_a_silent_node_moves_by_an_estimate_that_says_so_and_never_reaches_its_end() -> None:
    clock, paces = Clock(), Paces()
    paces.learn("DDColor_Colorize", 4.0)
    r = relay(clock, paces)
    r.on_event(Executing("p", "2"))
    estimates = []
    for second in range(1, 30):
        clock.now = float(second)
        note = r.tick()
        if note is not None:
            estimates.append(note)
    assert estimates and all(n.message_key == "comfy.estimate" for n in estimates)
    fractions = [n.step_progress for n in estimates]
    assert fractions == sorted(fractions) and 0.6 < fractions[3] < 0.7  # 1 - e^-1 at the expected 4 s
    assert max(fractions) <= ESTIMATE_CAP
    assert r.on_event(Progress("p", "2", 1, 2)) is not None and r.tick() is None  # it counts now: no estimate


def test_a_node_said_again_after_a_reconnect_is_not_news_and_its_time_is_not_cut() -> None:
    clock = Clock()
    r = relay(clock)
    assert r.on_event(Executing("p", "4")) is not None
    clock.now = 3.0
    assert r.on_event(Executing("p", "4")) is None
    assert r.running is not None and r.running.since == 0.0


def test_cached_nodes_count_as_done_and_progress_state_counts_the_running_node() -> None:
    r = relay()
    cached = r.on_event(ExecutionCached("p", ("1", "2")))
    assert cached is not None and cached.message_params == {"count": 2} and cached.progress > START
    r.on_event(Executing("p", "4"))
    note = r.on_event(ProgressState("p", {"4": NodeState(3, 6, "running")}))
    assert note is not None and note.step_progress == 0.5
    assert r.on_event(ProgressState("p", {"4": NodeState(3, 6, "running")})) is None  # the same again says nothing


def test_paces_learn_each_node_type_from_its_runs() -> None:
    clock, paces = Clock(), Paces()
    r = relay(clock, paces)
    r.on_event(Executing("p", "2"))
    clock.now = 8.0
    r.on_event(Executing("p", "5"))
    assert paces.expected("DDColor_Colorize") == 8.0


def test_paces_are_kept_as_text_and_a_damaged_file_is_ignored() -> None:
    paces = Paces()
    paces.learn("DDColor_Colorize", 7.5)
    assert paces.changed
    text = paces.dumps()
    assert not paces.changed
    again = Paces()
    again.loads(text)
    assert again.expected("DDColor_Colorize") == 7.5
    again.loads('{"X": -1, "Y": "slow", "Z": 2}')
    again.loads("not json")
    assert again.expected("X") == again.expected("Y") == 5.0 and again.expected("Z") == 2.0
