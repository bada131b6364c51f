"""One prompt's ComfyUI events, told as this service's notes: a stage, a `source`, a `node`, and a whole-job
percentage that never goes back.

Each node of the prompt weighs its share of the job (a colorizer or an upscaler more than a loader); the job's
percentage is the finished nodes' share plus the running node's fraction of its own, between `START` and `END`
(the service's `upload`/`queued` come before, `complete` is 100). A node that counts (`progress`) gives its
fraction; one that says nothing while it runs (kijai's DDColor node never calls ComfyUI's progress bar) gets an
estimate from how long that node type took before (`Paces`), said as an estimate (`comfy.estimate`): it rises as
1 - exp(-elapsed / expected) (63 % at the expected time, 95 % at three times it), so a slower run than before still
moves, and stops at `ESTIMATE_CAP`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from oldphoto.comfy.events import Executing, ExecutionCached, ExecutionStart, NodeState, Progress, ProgressState
from oldphoto.protocol import Note, Source, Stage

START, END = 2, 98
ESTIMATE_CAP = 0.99
DEFAULT_NODE_S = 5.0
WEIGHTS = {"DDColor_Colorize": 10.0, "ImageUpscaleWithModel": 6.0, "KSampler": 10.0, "KSamplerAdvanced": 10.0}
SOURCES: dict[str, Source] = {
    "DDColor_Colorize": "colorize",
    "ImageUpscaleWithModel": "upscale",
    "UpscaleModelLoader": "upscale",
    "ImageSharpen": "sharpen",
    "LoadImage": "system",
    "SaveImage": "system",
}


def stage_of(class_type: str) -> Stage:
    if class_type == "LoadImage":
        return "preprocess"
    if "Loader" in class_type:
        return "load_model"
    if class_type in ("SaveImage", "PreviewImage"):
        return "postprocess"
    return "inference"


def source_of(class_type: str) -> Source:
    return SOURCES.get(class_type, "comfyui")


def weight_of(class_type: str) -> float:
    if class_type in WEIGHTS:
        return WEIGHTS[class_type]
    return 0.5 if stage_of(class_type) in ("preprocess", "postprocess") else 1.0


class Paces:
    """How long each node type took on this service's ComfyUI instances (a moving average), for silent nodes.
    `changed` says there is something new to keep (the runner saves them in the data dir: `dumps` / `loads`)."""

    def __init__(self, smoothing: float = 0.3) -> None:
        self.smoothing = smoothing
        self.seconds: dict[str, float] = {}
        self.changed = False

    def dumps(self) -> str:
        self.changed = False
        return json.dumps({k: round(v, 3) for k, v in sorted(self.seconds.items())})

    def loads(self, text: str) -> None:
        """Kept durations; anything that is not a positive number of seconds is ignored (a hand-edited file)."""
        try:
            data = json.loads(text)
        except ValueError:
            return
        if isinstance(data, dict):
            self.seconds.update({str(k): float(v) for k, v in data.items() if isinstance(v, (int, float)) and v > 0})

    def expected(self, class_type: str) -> float:
        return self.seconds.get(class_type, DEFAULT_NODE_S)

    def learn(self, class_type: str, seconds: float) -> None:
        before = self.seconds.get(class_type)
        self.seconds[class_type] = seconds if before is None else before + self.smoothing * (seconds - before)
        self.changed = True


@dataclass
class Running:
    node: str
    class_type: str
    since: float
    counted: bool = False  # it said `progress`: no estimate for it
    fraction: float = 0.0


@dataclass
class PromptRelay:
    """Turns one prompt's events into notes. `prompt` is the API form that was submitted (node id -> class_type)."""

    prompt: dict[str, Any]
    paces: Paces
    clock: Any = time.monotonic
    done: set[str] = field(default_factory=set)
    running: Running | None = None
    floor: int = START

    @property
    def total_weight(self) -> float:
        return sum(weight_of(self._type(node)) for node in self.prompt) or 1.0

    def on_event(self, event: ExecutionStart | ExecutionCached | Executing | Progress | ProgressState) -> Note | None:
        match event:
            case ExecutionStart():
                return self._note("preprocess", "system", None, "comfy.start", {})
            case ExecutionCached(_, nodes):
                self.done.update(n for n in nodes if n in self.prompt)
                return self._note("preprocess", "system", None, "comfy.cached", {"count": len(nodes)}) if nodes else None
            case Executing(_, node):
                return self._begin(node) if node is not None else None
            case Progress(_, node, value, maximum):
                return self._count(node, value, maximum)
            case ProgressState(_, nodes):
                return self._from_state(nodes)

    def tick(self) -> Note | None:
        """While a silent node runs: its estimated fraction, from how long its type took before."""
        current = self.running
        if current is None or current.counted:
            return None
        elapsed = self.clock() - current.since
        fraction = min(ESTIMATE_CAP, 1.0 - math.exp(-elapsed / self.paces.expected(current.class_type)))
        if fraction < current.fraction + 0.01:  # a change a person would see
            return None
        current.fraction = fraction
        params = {"class_type": current.class_type, "percent": round(fraction * 100)}
        return self._note(stage_of(current.class_type), source_of(current.class_type), current.node, "comfy.estimate", params, fraction)

    def finish(self) -> None:
        """The prompt succeeded: the last node's time is learned too."""
        self._close_running()

    def _begin(self, node: str) -> Note | None:
        if self.running is not None and self.running.node == node:
            return None  # said again: ComfyUI repeats the running node to a client that reconnects
        self._close_running()
        class_type = self._type(node)
        self.running = Running(node, class_type, self.clock())
        return self._note(stage_of(class_type), source_of(class_type), node, "comfy.node", {"class_type": class_type, "node": node})

    def _count(self, node: str, value: float, maximum: float) -> Note | None:
        current = self.running
        if current is None or current.node != node:
            return None
        fraction = max(0.0, min(1.0, value / maximum))
        if current.counted and fraction <= current.fraction:
            return None
        current.counted, current.fraction = True, fraction
        params = {"class_type": current.class_type, "value": int(value), "max": int(maximum)}
        return self._note(stage_of(current.class_type), source_of(current.class_type), node, "comfy.step", params, fraction)

    def _from_state(self, nodes: dict[str, NodeState]) -> Note | None:
        """`progress_state` repeats what `progress` says for the running node (newer ComfyUI may send only this)."""
        current = self.running
        state = nodes.get(current.node) if current is not None else None
        if current is None or state is None or state.state != "running" or state.value <= 0:
            return None
        return self._count(current.node, state.value, state.max)

    def _close_running(self) -> None:
        if self.running is not None:
            self.done.add(self.running.node)
            self.paces.learn(self.running.class_type, self.clock() - self.running.since)
            self.running = None

    def _note(
        self, stage: Stage, source: Source, node: str | None, key: str, params: dict[str, Any], fraction: float | None = None
    ) -> Note:
        done = sum(weight_of(self._type(n)) for n in self.done)
        current = weight_of(self.running.class_type) * (fraction or 0.0) if self.running is not None else 0.0
        progress = START + int((END - START) * (done + current) / self.total_weight)
        self.floor = max(self.floor, min(END, progress))
        step = None if fraction is None else round(fraction, 3)
        return Note(stage=stage, source=source, node=node, message_key=key, message_params=params, progress=self.floor, step_progress=step)

    def _type(self, node: str) -> str:
        spec = self.prompt.get(node)
        return str(spec.get("class_type", "")) if isinstance(spec, dict) else ""
